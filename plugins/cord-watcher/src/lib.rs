//! The CORD-like example's watcher: logs one line per change it is told about, and refuses
//! (an error, which the engine only counts) changes of objects whose key starts with `bad`.

use syncore_plugin_sdk::{export_watcher, log, WatchEvent, WatchKind, Watcher};

/// Logs what it sees.
struct Logger;

impl Watcher for Logger {
    fn notify(event: &WatchEvent) -> Result<(), String> {
        let kind = match event.kind {
            WatchKind::Declarative => "declarative",
            WatchKind::Feedback => "feedback",
            WatchKind::Deleted => "deleted",
        };
        log::info(&format!(
            "{} saw {kind} change of {} {} [{}]",
            event.watcher_model,
            event.model,
            event.key,
            event.changed.join(",")
        ));
        if event.key.starts_with("bad") {
            return Err(format!("refusing to watch {}", event.key));
        }
        Ok(())
    }
}

export_watcher!(Logger);
