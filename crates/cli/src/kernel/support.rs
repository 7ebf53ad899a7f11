//! Whether this kernel and this process can take the kernel route, asked before
//! anything is made, so that a refusal leaves nothing behind.

/// The oldest Linux the route is offered on. By the kernel's history every piece it
/// uses is in 5.10 (cgroup setsockopt programs 5.3, the socket of a sock_ops program
/// and its socket-local storage 5.10, `bpf_setsockopt` of the five options 5.9, BPF
/// links on cgroups 5.7), but before 5.11 any setsockopt program on a cgroup makes
/// every setsockopt(2) there with a value over a page fail with EINVAL ("bpf: Don't
/// return EINVAL from {get,set}sockopt when optlen > PAGE_SIZE"): that harm rules
/// 5.10 out. It is tested only on newer kernels; 6.1 is the oldest long-term kernel of
/// the distributions it is packaged for (Debian 12).
pub const FIRST_KERNEL: (u32, u32) = (6, 1);

/// `CAP_NET_ADMIN`, `CAP_SYS_ADMIN`, `CAP_BPF` (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// What stands in the way of the kernel route; each says what is missing, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Kernel(String),
    Privileges,
    UserNamespace,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Kernel(release) => write!(
                f,
                "the kernel route needs Linux {}.{} or later, and this is Linux {release}",
                FIRST_KERNEL.0, FIRST_KERNEL.1
            ),
            Refusal::Privileges => f.write_str(
                "needs root: CAP_SYS_ADMIN to make a cgroup and mount cgroup2, CAP_BPF \
                 and CAP_NET_ADMIN to load and attach a sock_ops program",
            ),
            Refusal::UserNamespace => f.write_str(
                "needs root on the host: this runs in a user namespace (a rootless \
                 container, `unshare --user`), whose capabilities do not let bpf(2) load \
                 programs or cgroups outside it be written",
            ),
        }
    }
}

/// The first thing that rules the kernel route out here, if any.
pub fn refusal() -> Option<Refusal> {
    let release = release();
    if let Some(version) = version(&release) {
        if version < FIRST_KERNEL {
            return Some(Refusal::Kernel(release));
        }
    }
    if !initial_user_namespace() {
        return Some(Refusal::UserNamespace);
    }
    let caps = effective_capabilities();
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    let bpf = has(CAP_BPF) || has(CAP_SYS_ADMIN);
    if !(has(CAP_SYS_ADMIN) && bpf && has(CAP_NET_ADMIN)) {
        return Some(Refusal::Privileges);
    }
    None
}

/// The kernel release, as uname(2) reports it.
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_string())
        .unwrap_or_default()
}

/// Major and minor of a release such as `6.18.44-fc-v857`.
fn version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether this process is in the initial user namespace: its namespace file has the
/// inode number the kernel gives that namespace alone (`PROC_USER_INIT_INO`,
/// 0xEFFFFFFD, include/linux/proc_ns.h). Elsewhere capabilities count only inside the
/// namespace (user_namespaces(7)), and bpf(2) asks for them in the initial one. Taken
/// as the initial one when /proc cannot say.
fn initial_user_namespace() -> bool {
    const PROC_USER_INIT_INO: u64 = 0xEFFF_FFFD;
    std::fs::metadata("/proc/self/ns/user").map_or(true, |meta| {
        std::os::unix::fs::MetadataExt::ino(&meta) == PROC_USER_INIT_INO
    })
}

/// The effective capability set, from `CapEff` in /proc/self/status (proc(5)).
fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            let hex = text.lines().find_map(|line| line.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .unwrap_or(0)
}

/// The kernel lockdown mode, when the kernel has one and securityfs shows it
/// (kernel_lockdown(7)): the bracketed word of /sys/kernel/security/lockdown.
/// Lockdown does not forbid sock_ops programs, which read no kernel memory, but a
/// refused load under it is worth naming.
pub fn lockdown() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/security/lockdown").ok()?;
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(text[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_releases() {
        assert_eq!(version("6.18.44-fc-v857"), Some((6, 18)));
        assert_eq!(version("5.10.0-28-amd64"), Some((5, 10)));
        assert_eq!(version("6.1"), Some((6, 1)));
        assert_eq!(version("weird"), None);
    }
}
