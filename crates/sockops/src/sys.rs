//! The system calls: bpf(2) to load a program, attach it to a cgroup and ask a cgroup
//! what is attached. Each `bpf_attr` variant used is its own `#[repr(C)]` struct with the
//! layout of linux/bpf.h; the kernel zero-fills what a shorter struct leaves out and
//! refuses a longer one whose tail it does not know unless that tail is zero.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::insn::Insn;

// Commands (enum bpf_cmd).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_LINK_CREATE: libc::c_int = 28;

/// Where in a cgroup a program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// TCP events of the cgroup's sockets, connections established among them
    /// (`BPF_PROG_TYPE_SOCK_OPS` at `BPF_CGROUP_SOCK_OPS`).
    SockOps,
    /// Every setsockopt(2) on the cgroup's sockets, before the kernel's own handling
    /// (`BPF_PROG_TYPE_CGROUP_SOCKOPT` at `BPF_CGROUP_SETSOCKOPT`, Linux 5.3).
    SetSockOpt,
}

impl Hook {
    pub const ALL: [Hook; 2] = [Hook::SockOps, Hook::SetSockOpt];

    /// enum bpf_prog_type.
    fn program_type(self) -> u32 {
        match self {
            Hook::SockOps => 13,
            Hook::SetSockOpt => 25,
        }
    }

    /// enum bpf_attach_type.
    fn attach_type(self) -> u32 {
        match self {
            Hook::SockOps => 3,
            Hook::SetSockOpt => 22,
        }
    }
}
/// `BPF_F_ALLOW_MULTI`: other programs attached to the same cgroup, systemd's or an
/// operator's, keep running beside this one.
const F_ALLOW_MULTI: u32 = 1 << 1;
/// `BPF_F_QUERY_EFFECTIVE`: the programs that run for the cgroup, its ancestors' included.
const F_QUERY_EFFECTIVE: u32 = 1 << 0;

/// The name both programs (and their map) are loaded under, shown by `bpftool prog
/// show` and used to recognise them: by `keepalive status`, and to detach them.
pub const PROGRAM_NAME: &str = "keepalive";

/// A failed bpf(2) call: which command, the error, and the verifier's log when the
/// verifier refused the program.
#[derive(Debug)]
pub struct Error {
    pub call: &'static str,
    pub error: io::Error,
    pub verifier_log: Option<String>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bpf({}): {}", self.call, self.error)?;
        if let Some(log) = &self.verifier_log {
            write!(f, "; the verifier said: {}", log.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

pub(crate) fn failed(call: &'static str) -> Error {
    Error {
        call,
        error: io::Error::last_os_error(),
        verifier_log: None,
    }
}

/// bpf(2) with `attr` as its attribute block.
///
/// # Safety
/// `T` must be the `bpf_attr` variant of `cmd`, and every pointer in it valid for
/// what the kernel reads or writes through it for the duration of the call.
pub(crate) unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> libc::c_long {
    // SAFETY: the caller guarantees that `attr` matches `cmd`; the kernel reads and
    // writes at most size_of::<T>() bytes of it.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    }
}

/// [`bpf`] for a command that makes an object and returns a new descriptor for it;
/// `call` names the command in the error.
///
/// # Safety
/// As for [`bpf`], and `cmd` must be one that returns a new descriptor on success.
pub(crate) unsafe fn bpf_fd<T>(
    cmd: libc::c_int,
    call: &'static str,
    attr: &mut T,
) -> Result<OwnedFd, Error> {
    // SAFETY: the caller's guarantees.
    let fd = unsafe { bpf(cmd, attr) };
    if fd < 0 {
        return Err(failed(call));
    }
    // SAFETY: the command returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// A loaded program, unloaded by the kernel once the last reference (this descriptor,
/// a link, an attachment to a cgroup) is gone.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
    hook: Hook,
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Program {
    /// Loads `insns` as a program for `hook`. When the verifier refuses it, loads it
    /// again with the verifier's log on, so that the error carries the reason (a log
    /// on the first try would fail a good program whose log outgrows the buffer).
    pub fn load(hook: Hook, insns: &[Insn]) -> Result<Program, Error> {
        // The helpers used are not GPL-only; the license string states the project's.
        let license: &CStr = c"MIT OR Apache-2.0";
        let mut attr = ProgLoad {
            prog_type: hook.program_type(),
            insn_cnt: u32::try_from(insns.len()).unwrap_or(u32::MAX),
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            expected_attach_type: hook.attach_type(),
            ..ProgLoad::default()
        };
        attr.prog_name[..PROGRAM_NAME.len()].copy_from_slice(PROGRAM_NAME.as_bytes());
        // SAFETY: ProgLoad is BPF_PROG_LOAD's attribute block; `insns` and `license`
        // outlive the call, and no log buffer is given.
        let mut error = match unsafe { bpf_fd(BPF_PROG_LOAD, "BPF_PROG_LOAD", &mut attr) } {
            Ok(fd) => return Ok(Program { fd, hook }),
            Err(error) => error,
        };
        if error.error.raw_os_error() == Some(libc::EACCES)
            || error.error.raw_os_error() == Some(libc::EINVAL)
        {
            let mut log = vec![0u8; 1 << 16];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            // SAFETY: as above, and `log` is writable for `log_size` bytes for the
            // whole call. A program that loads this time is dropped: the error stands.
            drop(unsafe { bpf_fd(BPF_PROG_LOAD, "BPF_PROG_LOAD", &mut attr) });
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).into_owned();
            error.verifier_log = (!text.trim().is_empty()).then_some(text);
        }
        Err(error)
    }

    /// Attaches the program to `cgroup` with a BPF link (Linux 5.7): the attachment
    /// lasts as long as the returned [`Link`] and goes when it is dropped — or when
    /// this process dies, however it dies, so nothing stays attached behind it.
    pub fn link(&self, cgroup: BorrowedFd) -> Result<Link, Error> {
        #[repr(C)]
        struct LinkCreate {
            prog_fd: u32,
            target_fd: u32,
            attach_type: u32,
            flags: u32,
        }
        let mut attr = LinkCreate {
            prog_fd: self.fd.as_raw_fd() as u32,
            target_fd: cgroup.as_raw_fd() as u32,
            attach_type: self.hook.attach_type(),
            flags: 0,
        };
        // SAFETY: LinkCreate is BPF_LINK_CREATE's attribute block; it holds no pointers.
        let fd = unsafe { bpf_fd(BPF_LINK_CREATE, "BPF_LINK_CREATE", &mut attr) }?;
        Ok(Link { _fd: fd })
    }

    /// Attaches the program to `cgroup` for as long as the cgroup exists, beside any
    /// other program there (`BPF_F_ALLOW_MULTI`). For a systemd unit: systemd removes
    /// the unit's cgroup when the unit stops, and the attachment with it.
    pub fn attach(&self, cgroup: BorrowedFd) -> Result<(), Error> {
        #[repr(C)]
        struct ProgAttach {
            target_fd: u32,
            attach_bpf_fd: u32,
            attach_type: u32,
            attach_flags: u32,
            replace_bpf_fd: u32,
        }
        let mut attr = ProgAttach {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: self.fd.as_raw_fd() as u32,
            attach_type: self.hook.attach_type(),
            attach_flags: F_ALLOW_MULTI,
            replace_bpf_fd: 0,
        };
        // SAFETY: ProgAttach is BPF_PROG_ATTACH's attribute block; it holds no pointers.
        if unsafe { bpf(BPF_PROG_ATTACH, &mut attr) } < 0 {
            return Err(failed("BPF_PROG_ATTACH"));
        }
        Ok(())
    }

    /// Detaches the program from `cgroup`, where [`Program::attach`] put it.
    pub fn detach(&self, cgroup: BorrowedFd) -> Result<(), Error> {
        prog_detach(cgroup, self.fd.as_fd(), self.hook)
    }
}

/// An attachment made with [`Program::link`]; dropping it detaches the program.
#[derive(Debug)]
pub struct Link {
    _fd: OwnedFd,
}

/// A program that runs for a cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub id: u32,
    /// The name it was loaded under; empty when it cannot be read.
    pub name: String,
}

/// The sock_ops programs that run for connections of processes in `cgroup`: those
/// attached to it and to its ancestors.
pub fn attached(cgroup: BorrowedFd) -> Result<Vec<Attached>, Error> {
    query(cgroup, Hook::SockOps, F_QUERY_EFFECTIVE)
}

/// The sock_ops programs attached to `cgroup` itself.
pub fn attached_directly(cgroup: BorrowedFd) -> Result<Vec<Attached>, Error> {
    query(cgroup, Hook::SockOps, 0)
}

fn query(cgroup: BorrowedFd, hook: Hook, query_flags: u32) -> Result<Vec<Attached>, Error> {
    #[repr(C)]
    #[derive(Default)]
    struct ProgQuery {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        /// Named, so that it is zero rather than uninitialised padding.
        _pad: u32,
    }
    // The kernel allows 64 programs per cgroup and attach type (BPF_CGROUP_MAX_PROGS).
    let mut ids = [0u32; 64];
    let mut attr = ProgQuery {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: hook.attach_type(),
        query_flags,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..ProgQuery::default()
    };
    // SAFETY: ProgQuery is BPF_PROG_QUERY's attribute block, and `ids` is writable for
    // `prog_cnt` ids for the whole call.
    if unsafe { bpf(BPF_PROG_QUERY, &mut attr) } < 0 {
        return Err(failed("BPF_PROG_QUERY"));
    }
    let count = (attr.prog_cnt as usize).min(ids.len());
    Ok(ids[..count]
        .iter()
        .map(|&id| Attached {
            id,
            name: name_of(id).unwrap_or_default(),
        })
        .collect())
}

/// A descriptor of the loaded program with id `id`.
fn fd_of(id: u32) -> Result<OwnedFd, Error> {
    #[repr(C)]
    struct GetFdById {
        prog_id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut attr = GetFdById {
        prog_id: id,
        next_id: 0,
        open_flags: 0,
    };
    // SAFETY: GetFdById is BPF_PROG_GET_FD_BY_ID's attribute block; no pointers.
    unsafe { bpf_fd(BPF_PROG_GET_FD_BY_ID, "BPF_PROG_GET_FD_BY_ID", &mut attr) }
}

/// Detaches every program named [`PROGRAM_NAME`] attached to `cgroup` itself, at
/// either hook: what an earlier start or run left there. How many sock_ops programs
/// that was.
pub fn detach_ours(cgroup: BorrowedFd) -> Result<usize, Error> {
    let mut detached = 0;
    for hook in Hook::ALL {
        for program in query(cgroup, hook, 0)? {
            if program.name == PROGRAM_NAME {
                prog_detach(cgroup, fd_of(program.id)?.as_fd(), hook)?;
                detached += usize::from(hook == Hook::SockOps);
            }
        }
    }
    Ok(detached)
}

fn prog_detach(cgroup: BorrowedFd, program: BorrowedFd, hook: Hook) -> Result<(), Error> {
    #[repr(C)]
    struct ProgDetach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
    }
    let mut attr = ProgDetach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: hook.attach_type(),
    };
    // SAFETY: ProgDetach is BPF_PROG_DETACH's attribute block; it holds no pointers.
    if unsafe { bpf(BPF_PROG_DETACH, &mut attr) } < 0 {
        return Err(failed("BPF_PROG_DETACH"));
    }
    Ok(())
}

/// The name a loaded program was given, by id.
fn name_of(id: u32) -> Option<String> {
    #[repr(C)]
    struct GetInfo {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let fd = fd_of(id).ok()?;
    // struct bpf_prog_info up to and including `name`, at offset 64 (linux/bpf.h).
    let mut info = [0u8; 80];
    let mut attr = GetInfo {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: info.len() as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: GetInfo is BPF_OBJ_GET_INFO_BY_FD's attribute block; `info` is writable
    // for `info_len` bytes for the whole call.
    if unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) } < 0 {
        return None;
    }
    let name = &info[64..80];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some(String::from_utf8_lossy(&name[..end]).into_owned())
}
