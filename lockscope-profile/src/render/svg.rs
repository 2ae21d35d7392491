//! `svg`: an interactive flamegraph of wait time (or waits), drawn by inferno.
use std::io::{self, Write};

use inferno::flamegraph::{self, color::BasicPalette, Options, Palette};

use super::folded::folded_lines;
use super::Render;
use crate::analyze::{ViewOptions, Weight};
use crate::profile::{fmt_ns, Profile};

pub struct Svg {
    pub view: ViewOptions,
}

impl Render for Svg {
    fn render(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let lines = folded_lines(profile, &self.view);
        let m = &profile.meta;
        let mut opts = Options::default();
        opts.title = format!(
            "lock wait: pid {} ({}), {} recorded",
            m.pid,
            m.comm,
            fmt_ns(m.duration_ns)
        );
        opts.subtitle = Some(format!(
            "lockscope {} · futex waits by user stack · width = {}",
            m.lockscope_version,
            match self.view.weight {
                Weight::WaitTime => "time waiting",
                Weight::Count => "number of waits",
            }
        ));
        opts.count_name = match self.view.weight {
            Weight::WaitTime => "ns".into(),
            Weight::Count => "waits".into(),
        };
        // Off-CPU convention: blue for time spent not running.
        opts.colors = Palette::Basic(BasicPalette::Io);
        opts.hash = true;
        if lines.is_empty() {
            // inferno refuses an empty input; an empty profile still gets a valid picture.
            return flamegraph::from_lines(&mut opts, ["no_waits_recorded 1"], out)
                .map_err(io::Error::other);
        }
        flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
            .map_err(io::Error::other)
    }
}
