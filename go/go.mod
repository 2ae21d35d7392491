module lockscope.dev/go

go 1.19
