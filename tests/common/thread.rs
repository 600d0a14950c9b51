//! Threads for a forked child, started with `pthread_create(3)` itself
//! rather than through `std::thread`.
//!
//! A test's child is a copy of one thread of the multi-threaded harness,
//! and a lock that another harness thread held at the `fork` stays held in
//! the child for good. `std::thread` takes one at every thread start and
//! exit: the table of stack guard pages that its `SIGSEGV` handler reads
//! (`std::sys::pal::unix::stack_overflow::thread_info`). The harness
//! starts and ends a thread for every test, so now and then a child forks
//! while that table is locked, and its first `std::thread::spawn` waits
//! forever: in 2 of 51 runs of `tests/secret.rs` on a 2-core
//! x86_64 machine while the other test binaries ran beside it (built for
//! `i686-unknown-linux-musl`; the new thread waited in `futex`). musl and
//! glibc keep their own `pthread_create` usable after `fork` (they take or
//! reset their internal locks around it), and the mutexes here are made
//! by the child itself, after the fork.
//!
//! The part of `std::thread`'s API that the tests use: [`spawn`] and
//! [`scope`], with handles that `join` (a panic comes back as `Err`, as
//! from std) and say whether the thread [`is_finished`](JoinHandle::is_finished).
//! The threads are detached: `join` waits for the thread's result, which it
//! hands over only after it has dropped everything it borrowed.

use std::any::Any;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};

/// The stack each thread gets: `std::thread`'s default (musl's own is
/// 128 KiB).
const STACK: usize = 2 << 20;

/// What a thread returned, or its panic.
type Outcome<T> = Result<T, Box<dyn Any + Send + 'static>>;

/// Where a thread leaves its outcome for `join`.
struct Packet<T> {
    outcome: Mutex<Option<Outcome<T>>>,
    ready: Condvar,
}

impl<T> Packet<T> {
    fn new() -> Arc<Packet<T>> {
        Arc::new(Packet {
            outcome: Mutex::new(None),
            ready: Condvar::new(),
        })
    }

    fn put(&self, outcome: Outcome<T>) {
        *self.outcome.lock().unwrap() = Some(outcome);
        self.ready.notify_all();
    }

    fn take(&self) -> Outcome<T> {
        let mut slot = self.outcome.lock().unwrap();
        loop {
            if let Some(outcome) = slot.take() {
                return outcome;
            }
            slot = self.ready.wait(slot).unwrap();
        }
    }

    fn is_put(&self) -> bool {
        self.outcome.lock().unwrap().is_some()
    }
}

/// A thread started by [`spawn`].
pub struct JoinHandle<T> {
    packet: Arc<Packet<T>>,
}

impl<T> JoinHandle<T> {
    /// Waits for the thread's result; `Err` holds its panic.
    pub fn join(self) -> Outcome<T> {
        self.packet.take()
    }

    /// Whether the thread has handed over its result.
    pub fn is_finished(&self) -> bool {
        self.packet.is_put()
    }
}

/// `std::thread::spawn`, through `pthread_create(3)`.
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let packet = Packet::new();
    let theirs = Arc::clone(&packet);
    let body = Box::new(move || theirs.put(catch_unwind(AssertUnwindSafe(f))));
    if let Err(e) = start(body) {
        panic!("pthread_create: {e}");
    }
    JoinHandle { packet }
}

/// How many of a scope's threads still run, and how many panicked without
/// being joined.
#[derive(Default)]
struct Running {
    count: Mutex<(usize, usize)>,
    done: Condvar,
}

/// A scope for threads that borrow from the caller: see [`scope`].
pub struct Scope<'scope, 'env: 'scope> {
    running: Arc<Running>,
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// A thread started by [`Scope::spawn`].
pub struct ScopedJoinHandle<'scope, T> {
    packet: Arc<Packet<T>>,
    running: Arc<Running>,
    scope: PhantomData<&'scope ()>,
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Waits for the thread's result; `Err` holds its panic, which then no
    /// longer makes [`scope`] panic.
    pub fn join(self) -> Outcome<T> {
        let outcome = self.packet.take();
        if outcome.is_err() {
            self.running.count.lock().unwrap().1 -= 1;
        }
        outcome
    }

    /// Whether the thread has handed over its result.
    pub fn is_finished(&self) -> bool {
        self.packet.is_put()
    }
}

impl<'scope> Scope<'scope, '_> {
    /// `std::thread::Scope::spawn`, through `pthread_create(3)`.
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let packet = Packet::new();
        let theirs = Arc::clone(&packet);
        let running = Arc::clone(&self.running);
        running.count.lock().unwrap().0 += 1;
        let body: Box<dyn FnOnce() + Send + 'scope> = Box::new(move || {
            let outcome = catch_unwind(AssertUnwindSafe(f));
            if outcome.is_err() {
                running.count.lock().unwrap().1 += 1;
            }
            theirs.put(outcome);
            // The last use of anything borrowed for 'scope: a result that
            // no handle will take is dropped here, before the scope hears
            // that this thread is done.
            drop(theirs);
            running.count.lock().unwrap().0 -= 1;
            // After the lock is let go: a thread stopped by a seccomp
            // supervisor inside this wake-up holds nothing the test needs.
            running.done.notify_all();
        });
        // SAFETY: only the lifetime changes. [`scope`] does not return
        // before every thread it started has said it is done, which each
        // says after `f`, its result and its packet are gone: what they
        // borrow for 'scope outlives every use.
        let body: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(body) };
        if let Err(e) = start(body) {
            // Not started: the scope must not wait for it.
            self.running.count.lock().unwrap().0 -= 1;
            panic!("pthread_create: {e}");
        }
        ScopedJoinHandle {
            packet,
            running: Arc::clone(&self.running),
            scope: PhantomData,
        }
    }
}

/// `std::thread::scope`: runs `f`, then waits for every thread it started
/// through the [`Scope`]; panics if one of them panicked and was not
/// joined.
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let scope = Scope {
        running: Arc::new(Running::default()),
        scope: PhantomData,
        env: PhantomData,
    };
    let result = catch_unwind(AssertUnwindSafe(|| f(&scope)));
    let mut count = scope.running.count.lock().unwrap();
    while count.0 > 0 {
        count = scope.running.done.wait(count).unwrap();
    }
    let unjoined_panics = count.1;
    drop(count);
    match result {
        Err(panic) => resume_unwind(panic),
        Ok(_) if unjoined_panics > 0 => panic!("a scoped thread panicked"),
        Ok(value) => value,
    }
}

/// Starts a detached thread that runs `body`, or drops `body` and returns
/// `pthread_create`'s error.
fn start(body: Box<dyn FnOnce() + Send + 'static>) -> std::io::Result<()> {
    extern "C" fn run(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the pointer `start` made with `Box::into_raw`,
        // handed to this one thread only.
        let body = unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() + Send>>()) };
        body();
        std::ptr::null_mut()
    }
    let arg = Box::into_raw(Box::new(body));
    // SAFETY: `attr` is initialised by pthread_attr_init before use and
    // destroyed after; `thread` is a valid out-parameter; `run` takes the
    // one pointer it is given. On failure the box is taken back.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_attr_init(&mut attr), 0);
        assert_eq!(libc::pthread_attr_setstacksize(&mut attr, STACK), 0);
        assert_eq!(
            libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED),
            0
        );
        let mut thread: libc::pthread_t = std::mem::zeroed();
        let rc = libc::pthread_create(&mut thread, &attr, run, arg.cast());
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            drop(Box::from_raw(arg));
            return Err(std::io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}
