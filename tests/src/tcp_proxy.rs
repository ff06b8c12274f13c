//! A byte-for-byte TCP forwarder to put in front of a server (PostgreSQL, an edge) so a test
//! can fail the network the way it fails in production, without touching the server itself:
//!
//! - [`Link::Up`]: every connection is forwarded, both ways, untouched.
//! - [`Link::Down`]: the port stops listening (a connect is refused, as when the server is
//!   stopped) and every open connection is cut at once (reset, as when it crashed).
//! - [`Link::Blackhole`]: connections are accepted and then nothing: no byte forwarded, none
//!   answered, nothing closed (a partitioned network, or a host that hangs).
//!
//! Going back up rebinds the same port. Each connection has two copying threads.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context as _, Result};

/// What the link does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Forwarded.
    Up,
    /// Refused, and the open ones cut.
    Down,
    /// Accepted, then held without a byte either way.
    Blackhole,
}

/// A running forwarder; it stops when the test process ends.
pub struct TcpProxy {
    /// The address it listens on.
    pub address: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    accepted: AtomicU64,
}

struct State {
    link: Link,
    /// Bumped at every change, so an accept loop knows when it is no longer the current one.
    generation: u64,
    /// Both ends of every open connection (to cut them), and the held ones of a blackhole,
    /// by connection number.
    open: HashMap<u64, Vec<TcpStream>>,
}

impl TcpProxy {
    /// Forwards a free local port to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the TCP proxy")?;
        let proxy = Self {
            address: listener.local_addr()?,
            shared: Arc::new(Shared {
                upstream,
                state: Mutex::new(State {
                    link: Link::Up,
                    generation: 0,
                    open: HashMap::new(),
                }),
                accepted: AtomicU64::new(0),
            }),
        };
        spawn_accept_loop(listener, proxy.shared.clone(), 0);
        Ok(proxy)
    }

    /// Changes what the link does; returns once the change holds (a port brought down no
    /// longer accepts; one brought up accepts again).
    pub fn set(&self, link: Link) -> Result<()> {
        let mut state = self.shared.lock();
        if state.link == link {
            return Ok(());
        }
        let was_listening = state.link != Link::Down;
        state.link = link;
        state.generation += 1;
        for stream in state.open.drain().flat_map(|(_, streams)| streams) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if link != Link::Down && !was_listening {
            let listener = bind_again(self.address)?;
            spawn_accept_loop(listener, self.shared.clone(), state.generation);
        } else if link == Link::Down {
            // The accept loop notices the new generation within its poll and drops the
            // listener; wait for that, so the port refuses from now on.
            drop(state);
            while TcpStream::connect_timeout(&self.address, Duration::from_millis(50)).is_ok() {
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            // Up <-> Blackhole: the listener stays; the loop reads the link per connection.
        }
        Ok(())
    }

    /// Connections accepted so far (forwarded or held).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Binds `address` again after it was let go (retrying briefly while the kernel frees it).
fn bind_again(address: SocketAddr) -> Result<TcpListener> {
    let mut last = None;
    for _ in 0..100 {
        match TcpListener::bind(address) {
            Ok(listener) => return Ok(listener),
            Err(error) => last = Some(error),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no attempt"), anyhow::Error::from))
        .with_context(|| format!("binding {address} again"))
}

/// Accepts on `listener` until the link's generation moves past `generation` to `Down`.
fn spawn_accept_loop(listener: TcpListener, shared: Arc<Shared>, generation: u64) {
    std::thread::spawn(move || {
        if listener.set_nonblocking(true).is_err() {
            return;
        }
        loop {
            {
                let state = shared.lock();
                if state.link == Link::Down && state.generation >= generation {
                    return;
                }
            }
            match listener.accept() {
                Ok((client, _)) => {
                    let _ = client.set_nonblocking(false);
                    let number = shared.accepted.fetch_add(1, Ordering::SeqCst);
                    take(number, client, &shared);
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
}

/// Forwards or holds accepted connection `number`, as the link says now.
fn take(number: u64, client: TcpStream, shared: &Arc<Shared>) {
    let mut state = shared.lock();
    match state.link {
        Link::Down => drop(client),
        Link::Blackhole => {
            state.open.insert(number, vec![client]);
        }
        Link::Up => {
            drop(state);
            let Ok(server) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5))
            else {
                return;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let mut state = shared.lock();
            let (Ok(client_copy), Ok(server_copy)) = (client.try_clone(), server.try_clone())
            else {
                return;
            };
            if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                state.open.insert(number, vec![a, b]);
            }
            drop(state);
            let shared = shared.clone();
            std::thread::spawn(move || copy(client, server_copy));
            std::thread::spawn(move || {
                copy(server, client_copy);
                shared.lock().open.remove(&number);
            });
        }
    }
}

/// Copies `from` into `to` until either ends, then closes both.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                if to.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
