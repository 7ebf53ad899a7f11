//! Starting the program in its cgroup and staying beside it until it ends: the command
//! must outlive the program to remove the cgroup, so it cannot exec in place as
//! `run` does. The program's exit status and the signals sent to the command are
//! passed through instead.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};

use crate::signals;

/// Signals the command passes on to the program. Stop signals are not among them:
/// the command stops with its program's process group, so that a shell's job control
/// sees the job stop.
const FORWARDED: [libc::c_int; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGALRM,
];

/// The forwarded signals and SIGCHLD, blocked in this process so that sigwaitinfo(2)
/// takes them one at a time instead of handlers; with the mask the command inherited,
/// which the program gets back (std does not reset the mask of a child it forks).
struct Blocked {
    set: libc::sigset_t,
    inherited: libc::sigset_t,
}

impl Blocked {
    fn new() -> io::Result<Blocked> {
        // SAFETY: sigemptyset and sigaddset write only into `set`, a local sigset_t;
        // pthread_sigmask changes this thread's mask, the only thread of the command,
        // and writes the old one into `inherited`.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut inherited: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in FORWARDED.into_iter().chain([libc::SIGCHLD]) {
                libc::sigaddset(&mut set, signal);
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut inherited);
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(Blocked { set, inherited })
        }
    }

    /// Waits for the next of the blocked signals.
    fn next(&self) -> io::Result<libc::siginfo_t> {
        loop {
            // SAFETY: `info` is a zeroed siginfo_t the kernel fills; `self.set` is an
            // initialised set.
            let (rc, info) = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                (libc::sigwaitinfo(&self.set, &mut info), info)
            };
            if rc >= 0 {
                return Ok(info);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// How the program ended.
pub enum End {
    Exited(u8),
    Killed(libc::c_int),
}

/// Blocks the signals to pass on before the program starts, so that none is lost
/// between its start and the wait.
pub struct Supervisor(Blocked);

impl Supervisor {
    pub fn new() -> io::Result<Supervisor> {
        Blocked::new().map(Supervisor)
    }

    /// Starts `program` with `arguments` so that it moves itself into the cgroup
    /// whose `cgroup.procs` is open as `procs` before it executes a single instruction
    /// of its own: every connection it ever makes is in reach. It gets the signal mask
    /// and the SIGPIPE disposition the command inherited.
    pub fn spawn(
        &self,
        program: &OsString,
        arguments: &[OsString],
        procs: libc::c_int,
    ) -> io::Result<Child> {
        let mut command = Command::new(program);
        command.args(arguments);
        let inherited = self.0.inherited;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the hook runs in the forked child before execve(2); prctl(2),
        // getppid(2), _exit(2), write(2) and pthread_sigmask(3) (sigprocmask in a
        // single-threaded child) are async-signal-safe, and `procs` stays open in the parent, so the inherited
        // descriptor is valid. Writing "0" to cgroup.procs moves the writer (cgroups(7)).
        unsafe {
            command.pre_exec(move || {
                // Dies with the command: a command killed with SIGKILL can neither keep
                // the program's settings (the sock_ops program goes with its link) nor
                // pass the signal on, so the program goes too, as it would under
                // `run`, which is the program itself. The command may already be
                // gone: then the child is an orphan, and goes at once.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(128 + libc::SIGKILL);
                }
                if libc::write(procs, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
                libc::pthread_sigmask(libc::SIG_SETMASK, &inherited, std::ptr::null_mut());
                Ok(())
            });
        }
        signals::hand_on(&mut command);
        command.spawn()
    }

    /// Passes signals on to `child` until it ends. A signal the kernel sent to the
    /// whole foreground process group (a terminal's ^C, ^\, hangup: `SI_KERNEL`) has
    /// reached the program already and is not sent twice.
    pub fn wait(&self, child: &mut Child) -> io::Result<End> {
        let program = child.id() as libc::pid_t;
        loop {
            if let Some(status) = reap(program)? {
                return Ok(end(status));
            }
            let info = self.0.next()?;
            if info.si_signo == libc::SIGCHLD || info.si_code == libc::SI_KERNEL {
                continue;
            }
            // SAFETY: kill(2) on the child's pid, which stays ours (unreaped) until
            // reap above has seen it end.
            unsafe { libc::kill(program, info.si_signo) };
        }
    }
}

/// Collects every child that has ended, and returns the program's status once it has.
/// As process 1 of a pid namespace (a container's entrypoint), the command is the
/// parent of every process orphaned in the namespace (pid_namespaces(7)), which only
/// it can reap: it collects them all with waitpid(-1), as an init must, or each
/// would stay a zombie for the life of the run. Elsewhere it waits for the program
/// alone.
fn reap(program: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    let whom = if std::process::id() == 1 { -1 } else { program };
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) writes the status into a local int.
        let pid = unsafe { libc::waitpid(whom, &mut status, libc::WNOHANG) };
        if pid == program {
            return Ok(Some(ExitStatus::from_raw(status)));
        }
        if pid == 0 {
            return Ok(None);
        }
        if pid < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        // Another child (an orphan), collected: look again.
    }
}

fn end(status: ExitStatus) -> End {
    match (status.code(), status.signal()) {
        (Some(code), _) => End::Exited(code as u8),
        (None, Some(signal)) => End::Killed(signal),
        (None, None) => End::Exited(1),
    }
}

/// Ends this process the way the program ended: killed by the same signal, its
/// disposition reset first, so that the caller sees what it would have seen without
/// the command in between. Never with a core of its own (`RLIMIT_CORE` 0 first): the
/// program dumped its core, if it was to, and a second one from the command would
/// take its place (core(5): `core`, or `core.PID` in the same directory). Returns
/// only when the signal did not end the process.
pub fn die_like(signal: libc::c_int) {
    // SAFETY: setrlimit(2) of this process's own limit; signal(2) and raise(3) on this
    // process; the signal is unblocked only after its default action is restored.
    unsafe {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
}
