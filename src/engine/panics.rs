//! Panics on worker threads. A VU task's panic is caught by tokio and would
//! end that task in silence, and a worker thread's is caught by `join`; either
//! way the run would go on with part of its load. A panic hook sees both, on
//! the thread that panicked, and tells the coordinator which worker it was.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

static ANY: AtomicBool = AtomicBool::new(false);
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// Chains a hook in front of the current one (which still prints the panic).
pub fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if let Some(index) = thread
                .name()
                .and_then(|n| n.strip_prefix(super::WORKER_THREAD_PREFIX))
                .and_then(|i| i.parse::<usize>().ok())
            {
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                record(index, format!("{}{at}", message(info.payload())));
            }
            previous(info);
        }));
    });
}

pub fn record(index: usize, message: String) {
    ANY.store(true, Ordering::SeqCst);
    if let Ok(mut seen) = SEEN.lock()
        && !seen
            .iter()
            .any(|s| s.starts_with(&format!("worker {index} ")))
    {
        seen.push(format!("worker {index} panicked: {message}"));
    }
}

pub fn any() -> bool {
    ANY.load(Ordering::SeqCst)
}

pub fn take() -> Vec<String> {
    ANY.store(false, Ordering::SeqCst);
    SEEN.lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default()
}

pub fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}
