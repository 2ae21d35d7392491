//! stops: the signals that end a recording and save it: SIGINT (Ctrl-C), SIGTERM, SIGHUP (a
//! closed terminal) and SIGUSR1/2 (a supervisor). They are listened for from the start of the
//! command, before the seconds attaching can take: a Ctrl-C while attaching then ends the
//! recording as soon as it begins, saved, instead of killing lockscope with nothing written.
use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct StopSignals {
    signals: [Signal; 5],
}

impl StopSignals {
    /// Starts listening; needs a Tokio runtime context (`Runtime::enter`).
    pub fn listen() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            signals: [
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
                signal(SignalKind::user_defined1())?,
                signal(SignalKind::user_defined2())?,
            ],
        })
    }

    /// Resolves when any of them arrives (at once, if one came before).
    pub async fn recv(&mut self) {
        let [a, b, c, d, e] = &mut self.signals;
        tokio::select! {
            _ = a.recv() => {},
            _ = b.recv() => {},
            _ = c.recv() => {},
            _ = d.recv() => {},
            _ = e.recv() => {},
        }
    }
}
