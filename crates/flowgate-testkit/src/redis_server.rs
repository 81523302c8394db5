//! A private `redis-server` for one test: started on a free loopback port with its own
//! directory, stopped (and its directory removed) when dropped. Tests of a Redis backend run
//! against the real server, never a shared one and never a mock.
//!
//! ```no_run
//! use flowgate_testkit::redis_server::RedisServer;
//! let server = RedisServer::start().expect("redis-server");
//! println!("connect to {}", server.url());
//! ```

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why a server could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// `redis-server` is not on `PATH`.
    NotInstalled,
    /// It started but did not answer `PING` in time, or could not be spawned.
    Failed(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInstalled => f.write_str(
                "redis-server is not on PATH: the Redis tests run against a real server. \
                 Install it (Debian/Ubuntu: `sudo apt-get install -y redis-server`, \
                 macOS: `brew install redis`) and run the tests again",
            ),
            Self::Failed(why) => write!(f, "redis-server did not start: {why}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// How the server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Persistence {
    /// Memory only: a restart loses everything.
    None,
    /// Append-only file, fsync every write: a restart keeps every acknowledged write.
    Aof,
}

/// A running private `redis-server`.
///
/// ```no_run
/// use flowgate_testkit::redis_server::{Persistence, RedisServer};
/// let mut server = RedisServer::start_with(Persistence::Aof)?;
/// let url = server.url();
/// server.restart()?; // same port, same data
/// assert_eq!(server.url(), url);
/// # Ok::<(), flowgate_testkit::redis_server::ServerError>(())
/// ```
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    persistence: Persistence,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("dir", &self.dir)
            .field("persistence", &self.persistence)
            .field("running", &self.child.is_some())
            .finish()
    }
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

impl RedisServer {
    /// Starts a memory-only server.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotInstalled`] (whose message says how to install it) or
    /// [`ServerError::Failed`].
    ///
    /// ```no_run
    /// let server = flowgate_testkit::redis_server::RedisServer::start()?;
    /// assert!(server.url().starts_with("redis://127.0.0.1:"));
    /// # Ok::<(), flowgate_testkit::redis_server::ServerError>(())
    /// ```
    pub fn start() -> Result<Self, ServerError> {
        Self::start_with(Persistence::None)
    }

    /// Starts a server with the given persistence.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    ///
    /// ```no_run
    /// use flowgate_testkit::redis_server::{Persistence, RedisServer};
    /// let _server = RedisServer::start_with(Persistence::Aof)?;
    /// # Ok::<(), flowgate_testkit::redis_server::ServerError>(())
    /// ```
    pub fn start_with(persistence: Persistence) -> Result<Self, ServerError> {
        let dir = std::env::temp_dir().join(format!(
            "flowgate-redis-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| ServerError::Failed(format!("cannot create {}: {e}", dir.display())))?;
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let mut server = Self {
                child: None,
                port,
                dir: dir.clone(),
                persistence,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(ServerError::Failed(why)) => last = why, // the port was taken meanwhile
                Err(e) => return Err(e),
            }
        }
        Err(ServerError::Failed(last))
    }

    fn spawn(&mut self) -> Result<(), ServerError> {
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--save")
            .arg("")
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match self.persistence {
            Persistence::None => command.args(["--appendonly", "no"]),
            Persistence::Aof => command.args(["--appendonly", "yes", "--appendfsync", "always"]),
        };
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ServerError::NotInstalled)
            }
            Err(e) => return Err(ServerError::Failed(format!("spawn: {e}"))),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    let log =
                        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                    let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                    return Err(ServerError::Failed(format!("exited with {status}: {tail}")));
                }
            }
            if ping(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err(ServerError::Failed("no answer to PING within 10 s".into()))
    }

    /// The URL to connect to.
    ///
    /// ```no_run
    /// let server = flowgate_testkit::redis_server::RedisServer::start()?;
    /// assert_eq!(server.url(), format!("redis://127.0.0.1:{}/", server.port()));
    /// # Ok::<(), flowgate_testkit::redis_server::ServerError>(())
    /// ```
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The loopback port it listens on.
    ///
    /// ```no_run
    /// let server = flowgate_testkit::redis_server::RedisServer::start()?;
    /// assert!(server.port() > 0);
    /// # Ok::<(), flowgate_testkit::redis_server::ServerError>(())
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory.
    ///
    /// ```no_run
    /// let server = flowgate_testkit::redis_server::RedisServer::start()?;
    /// assert!(server.dir().exists());
    /// # Ok::<(), flowgate_testkit::redis_server::ServerError>(())
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server (SIGKILL: no goodbye, as in a crash). With [`Persistence::Aof`],
    /// every write it acknowledged is on disk.
    ///
    /// ```no_run
    /// let mut server = flowgate_testkit::redis_server::RedisServer::start()?;
    /// server.kill();
    /// assert!(!server.is_running());
    /// # Ok::<(), flowgate_testkit::redis_server::ServerError>(())
    /// ```
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it runs.
    ///
    /// ```no_run
    /// let server = flowgate_testkit::redis_server::RedisServer::start()?;
    /// assert!(server.is_running());
    /// # Ok::<(), flowgate_testkit::redis_server::ServerError>(())
    /// ```
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts it again on the same port and directory (after [`kill`](Self::kill), or kills
    /// it first).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    ///
    /// ```no_run
    /// let mut server = flowgate_testkit::redis_server::RedisServer::start()?;
    /// server.restart()?;
    /// assert!(server.is_running());
    /// # Ok::<(), flowgate_testkit::redis_server::ServerError>(())
    /// ```
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                // The old socket may linger for a moment.
                Err(ServerError::Failed(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16, ServerError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| ServerError::Failed(format!("no free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| ServerError::Failed(format!("no free port: {e}")))
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_server_says_how_to_install_it() {
        let message = ServerError::NotInstalled.to_string();
        assert!(
            message.contains("apt-get install -y redis-server"),
            "{message}"
        );
        assert!(message.contains("brew install redis"), "{message}");
    }

    #[test]
    fn a_server_starts_answers_and_restarts_on_its_port() {
        let Ok(mut server) = RedisServer::start() else {
            panic!("{}", ServerError::NotInstalled)
        };
        let port = server.port();
        assert!(ping(port));
        server.kill();
        assert!(!server.is_running() && !ping(port));
        server.restart().expect("restart");
        assert_eq!(server.port(), port);
        assert!(ping(port));
        let dir = server.dir().to_path_buf();
        drop(server);
        assert!(!dir.exists(), "its directory is removed");
    }
}
