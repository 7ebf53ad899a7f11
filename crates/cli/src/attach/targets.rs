//! The processes `attach` and `detach` act on: the PIDs given, and with `--unit` every
//! process of a running service, found through its cgroup.

use crate::failure::Failure;
use crate::kernel::{self, cgroup};
use crate::status::process::{self, Pidfd};

/// The processes named: the PIDs given, and with `--unit` every process in the
/// service's cgroup (systemctl's `ControlGroup`), its sub-cgroups included.
pub struct Targets {
    pub pids: Vec<i32>,
    pub service: Option<Service>,
}

/// The running service `--unit` names, and its cgroup.
pub struct Service {
    pub name: String,
    pub cgroup: cgroup::Own,
}

impl Targets {
    pub fn find(unit: Option<&str>, pids: &[i32]) -> Result<Targets, Failure> {
        let mut all = pids.to_vec();
        let service = match unit {
            Some(unit) => {
                let name = if unit.contains('.') {
                    unit.to_string()
                } else {
                    format!("{unit}.service")
                };
                let refuse = |why: String| Failure::with_code(1, format!("--unit {name}: {why}"));
                let path = kernel::unit::control_group(&name)
                    .map_err(refuse)?
                    .ok_or_else(|| refuse("not running: it has no cgroup".into()))?;
                let cgroup = cgroup::at(&path).map_err(refuse)?;
                all.extend(
                    cgroup
                        .processes()
                        .map_err(|err| refuse(format!("cannot list its processes: {err}")))?,
                );
                Some(Service { name, cgroup })
            }
            None => None,
        };
        all.sort_unstable();
        all.dedup();
        Ok(Targets { pids: all, service })
    }
}

/// Whether `pid` has exited, or begun to (a zombie, or PF_EXITING set): nothing of it
/// is left to attach or detach.
pub fn exited_now(pid: i32) -> bool {
    match Pidfd::open(pid) {
        Ok(pidfd) => pidfd.has_exited() || process::is_exiting(pid),
        Err(err) => err.raw_os_error() == Some(libc::ESRCH),
    }
}

/// A process `attach` or `detach` acts on, opened: a pidfd that pins it, a pidfd of a
/// live thread to duplicate its descriptors through once its main thread has exited
/// (pthread_exit(3)), and the directory whose `fd` lists them.
pub struct Opened {
    pub pidfd: Pidfd,
    pub thread: Option<Pidfd>,
    pub dir: String,
}

/// Opens `pid`; the error says why not, and that nothing was changed.
pub fn open(pid: i32) -> Result<Opened, String> {
    let pidfd = Pidfd::open(pid).map_err(|err| match err.raw_os_error() {
        Some(libc::ESRCH) => "no such process; nothing was changed".to_string(),
        _ => format!("pidfd_open: {err}; nothing was changed"),
    })?;
    let thread = process::reach(pid).map_err(|err| {
        format!(
            "its main thread has exited, and reaching its descriptors through another \
             thread takes pidfd_open(2) with PIDFD_THREAD, Linux 6.9 ({err}); nothing was \
             changed"
        )
    })?;
    let dir = process::fd_dir(pid)
        .map_err(|err| format!("/proc/{pid}/task: {err}; nothing was changed"))?;
    Ok(Opened { pidfd, thread, dir })
}
