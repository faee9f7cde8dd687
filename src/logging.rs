//! The service's log lines, as text or JSON on stderr. Under systemd, when stderr is
//! the journal stream named in `JOURNAL_STREAM`, every line starts with its syslog
//! priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug and trace — the
//! sd-daemon(3) prefixes): journald strips the prefix and files the line at that
//! priority, so `journalctl -p err` shows the errors and nothing else. Without the
//! prefix every line would be filed at `info`.

use std::fmt;
use std::io;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::policy::config::LogFormat;

/// Installs the service's subscriber: level from `CACHEKEEPER_LOG` (default `info`),
/// priorities when stderr goes to the journal.
pub(crate) fn init_service(log_format: LogFormat) {
    let filter = EnvFilter::try_from_env("CACHEKEEPER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing::subscriber::set_global_default(subscriber(log_format, stderr_is_journal(), filter, io::stderr));
}

/// The subscriber itself, writing to `writer`; `journal` adds the priority prefixes.
pub(crate) fn subscriber<W>(
    log_format: LogFormat,
    journal: bool,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // A line that cannot be written (the reader of stderr is gone) is lost, nothing more:
    // by default the subscriber reports it with `eprintln!`, which panics on the same
    // broken stderr and would take the logging thread (a cache's worker) with it.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).log_internal_errors(false);
    match log_format {
        LogFormat::Text => {
            let inner = format().with_target(false).with_ansi(false);
            Box::new(builder.event_format(Priority { inner, journal }).finish())
        }
        LogFormat::Json => {
            let inner = format().json();
            Box::new(builder.fmt_fields(JsonFields::new()).event_format(Priority { inner, journal }).finish())
        }
    }
}

fn format() -> format::Format {
    format::Format::default()
}

/// The sd-daemon(3) prefix for a level.
pub(crate) fn prefix(level: Level) -> &'static str {
    match level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        Level::DEBUG | Level::TRACE => "<7>",
    }
}

/// True when stderr is the stream systemd connected to the journal: `JOURNAL_STREAM`
/// holds its `device:inode`. Comparing them (as sd_journal_stream_fd(3) advises) keeps
/// the prefixes out of a terminal or file that a child of the service inherited the
/// variable with.
fn stderr_is_journal() -> bool {
    is_stream(std::env::var_os("JOURNAL_STREAM").as_deref(), io::stderr())
}

fn is_stream(journal_stream: Option<&std::ffi::OsStr>, fd: impl std::os::fd::AsFd) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.to_str()).and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    // dev_t and ino_t are u64 on Linux but not everywhere (macOS: i32 and u64).
    #[allow(clippy::unnecessary_cast)]
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_dev as u64 == dev && st.st_ino as u64 == ino)
}

/// Another event format, with the priority prefix in front when `journal` is set.
struct Priority<F> {
    inner: F,
    journal: bool,
}

impl<S, N, F> FormatEvent<S, N> for Priority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        if self.journal {
            writer.write_str(prefix(*event.metadata().level()))?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    fn lines(log_format: LogFormat, journal: bool) -> Vec<String> {
        let buffer = Buffer::default();
        let sub = subscriber(log_format, journal, EnvFilter::new("trace"), buffer.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::error!("an error");
            tracing::warn!(root = "/var/cache/go/mod", "a warning");
            tracing::info!("some info");
            tracing::debug!("a detail");
            tracing::trace!("a trace");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn under_the_journal_each_text_line_starts_with_its_syslog_priority() {
        let lines = lines(LogFormat::Text, true);
        let expected =
            [("<3>", "an error"), ("<4>", "a warning"), ("<6>", "some info"), ("<7>", "a detail"), ("<7>", "a trace")];
        assert_eq!(lines.len(), expected.len(), "{lines:?}");
        for (line, (prefix, message)) in lines.iter().zip(expected) {
            assert!(line.starts_with(prefix) && line.contains(message), "{line:?} should be {prefix} … {message}");
        }
        assert!(lines[1].contains("WARN") && lines[1].contains("root=\"/var/cache/go/mod\""), "{}", lines[1]);
    }

    #[test]
    fn under_the_journal_json_lines_carry_the_prefix_before_the_object() {
        let lines = lines(LogFormat::Json, true);
        assert_eq!(lines.len(), 5, "{lines:?}");
        for (line, prefix) in lines.iter().zip(["<3>", "<4>", "<6>", "<7>", "<7>"]) {
            let json = line.strip_prefix(prefix).unwrap_or_else(|| panic!("{line:?} lacks {prefix}"));
            let value: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert!(value["fields"]["message"].is_string(), "{value}");
        }
    }

    #[test]
    fn outside_the_journal_lines_have_no_prefix() {
        for log_format in [LogFormat::Text, LogFormat::Json] {
            let lines = lines(log_format, false);
            assert_eq!(lines.len(), 5, "{lines:?}");
            assert!(lines.iter().all(|l| !l.starts_with('<')), "{lines:?}");
        }
    }

    #[test]
    fn only_the_stream_journal_stream_names_is_the_journal() {
        let file = tempfile::tempfile().unwrap();
        let st = nix::sys::stat::fstat(&file).unwrap();
        let this = format!("{}:{}", st.st_dev, st.st_ino);
        assert!(is_stream(Some(this.as_ref()), &file));
        let other = format!("{}:{}", st.st_dev, st.st_ino + 1);
        for value in [Some(other.as_str()), Some("garbage"), Some(""), None] {
            assert!(!is_stream(value.map(AsRef::as_ref), &file), "{value:?}");
        }
    }
}
