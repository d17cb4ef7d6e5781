//! Lambda's execution environments: per function a pool of environments, each
//! serving one request at a time. An invocation that finds none free starts one
//! (a cold start: the init phase runs first, and the environment writes to a
//! log stream of its own); an environment idle longer than the idle timeout is
//! reaped, so the next request after a quiet spell is cold again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// What the sandbox plays Lambda with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LambdaSettings {
    /// How long a new environment's init phase takes (slept, as Lambda does
    /// before the first invocation of a new environment).
    pub cold_start: Duration,
    /// How long a free environment is kept before it is reaped.
    pub idle_timeout: Duration,
}

impl Default for LambdaSettings {
    fn default() -> LambdaSettings {
        LambdaSettings {
            cold_start: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// One execution environment: its log stream names it.
#[derive(Debug)]
pub struct Environment {
    pub stream: Arc<str>,
    /// The pool it belongs to: one function as configured (see [`Lambda::acquire`]).
    pub pool: String,
}

struct Idle {
    environment: Arc<Environment>,
    since: Instant,
}

pub struct Lambda {
    settings: LambdaSettings,
    /// Free environments per function; the most recently used last.
    free: Mutex<HashMap<String, Vec<Idle>>>,
}

/// An environment held by one invocation; it goes back to the pool when dropped
/// (also when the client went away mid-request: Lambda finishes the invocation).
pub struct Lease<'a> {
    lambda: &'a Lambda,
    pub environment: Arc<Environment>,
    /// Set on the environment's first invocation: the init phase it ran.
    pub init_duration: Option<Duration>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut free = self.lambda.lock();
        free.entry(self.environment.pool.clone())
            .or_default()
            .push(Idle {
                environment: self.environment.clone(),
                since: Instant::now(),
            });
    }
}

impl Lambda {
    pub fn new(settings: LambdaSettings) -> Lambda {
        Lambda {
            settings,
            free: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Idle>>> {
        match self.free.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A free warm environment of `pool` (a function as configured: a new
    /// configuration never reuses the old one's environments), or a new one
    /// after its init phase.
    pub async fn acquire(&self, pool: &str) -> Lease<'_> {
        let warm = {
            let mut free = self.lock();
            let now = Instant::now();
            reap(&mut free, now, self.settings.idle_timeout);
            free.get_mut(pool).and_then(Vec::pop)
        };
        if let Some(idle) = warm {
            return Lease {
                lambda: self,
                environment: idle.environment,
                init_duration: None,
            };
        }
        let environment = Arc::new(Environment {
            stream: Arc::from(stream_name(SystemTime::now()).as_str()),
            pool: pool.to_string(),
        });
        let t0 = Instant::now();
        if !self.settings.cold_start.is_zero() {
            tokio::time::sleep(self.settings.cold_start).await;
        }
        Lease {
            lambda: self,
            environment,
            init_duration: Some(t0.elapsed()),
        }
    }

    /// Free environments per pool.
    #[cfg(test)]
    pub fn free_counts(&self) -> HashMap<String, usize> {
        let mut free = self.lock();
        reap(&mut free, Instant::now(), self.settings.idle_timeout);
        free.iter().map(|(f, v)| (f.clone(), v.len())).collect()
    }
}

fn reap(free: &mut HashMap<String, Vec<Idle>>, now: Instant, idle_timeout: Duration) {
    for pool in free.values_mut() {
        pool.retain(|idle| now.duration_since(idle.since) < idle_timeout);
    }
    free.retain(|_, pool| !pool.is_empty());
}

/// `YYYY/MM/DD/[$LATEST]<32 hex>`: the stream one environment writes to.
pub fn stream_name(now: SystemTime) -> String {
    let t = time::OffsetDateTime::from(now);
    format!(
        "{:04}/{:02}/{:02}/[$LATEST]{}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lambda(cold_ms: u64, idle_ms: u64) -> Lambda {
        Lambda::new(LambdaSettings {
            cold_start: Duration::from_millis(cold_ms),
            idle_timeout: Duration::from_millis(idle_ms),
        })
    }

    #[tokio::test]
    async fn sequential_invocations_reuse_one_environment() {
        let l = lambda(0, 60_000);
        let first = l.acquire("f").await;
        assert!(first.init_duration.is_some());
        let stream = first.environment.stream.clone();
        drop(first);
        for _ in 0..5 {
            let again = l.acquire("f").await;
            assert!(again.init_duration.is_none());
            assert_eq!(again.environment.stream, stream);
        }
    }

    #[tokio::test]
    async fn busy_environments_are_not_shared() {
        let l = lambda(20, 60_000);
        // Four invocations in flight at once: none finds a free environment.
        let (a, b, c, d) = tokio::join!(
            l.acquire("f"),
            l.acquire("f"),
            l.acquire("f"),
            l.acquire("f")
        );
        let leases = [a, b, c, d];
        assert!(leases.iter().all(|l| {
            l.init_duration
                .is_some_and(|d| d >= Duration::from_millis(20))
        }));
        let mut streams: Vec<_> = leases
            .iter()
            .map(|l| l.environment.stream.clone())
            .collect();
        streams.sort();
        streams.dedup();
        assert_eq!(streams.len(), 4);
        drop(leases);
        assert_eq!(l.free_counts().get("f"), Some(&4));
        // Another function has environments of its own.
        assert!(l.acquire("g").await.init_duration.is_some());
    }

    #[tokio::test]
    async fn idle_environments_are_reaped() {
        let l = lambda(0, 30);
        drop(l.acquire("f").await);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(l.free_counts().is_empty());
        assert!(l.acquire("f").await.init_duration.is_some());
    }

    #[test]
    fn stream_names_look_like_lambdas() {
        let name = stream_name(SystemTime::UNIX_EPOCH);
        assert!(name.starts_with("1970/01/01/[$LATEST]"));
        assert_eq!(name.len(), "1970/01/01/[$LATEST]".len() + 32);
    }
}
