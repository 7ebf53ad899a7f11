//! The marks: socket-local storage (`BPF_MAP_TYPE_SK_STORAGE`, Linux 5.2) in which the
//! setsockopt program records, per socket, which keepalive options the program set
//! itself, and which the sock_ops program reads when the connection is established.
//!
//! The storage lives and dies with each socket, so there is nothing to clean up and
//! nothing to grow; `BPF_F_CLONE` copies a listener's marks to every connection
//! accepted on it, which inherits the listener's options in the same way.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::sys::{self, Error};

/// One byte per option ([`crate::option::SockOpt::mark`]), five used.
pub const MARKS_SIZE: u32 = 8;

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_BTF_LOAD: libc::c_int = 18;
const MAP_TYPE_SK_STORAGE: u32 = 24;
/// Socket storage is allocated when first asked for; the kernel requires saying so.
const F_NO_PREALLOC: u32 = 1 << 0;
const F_CLONE: u32 = 1 << 9;

/// The map of marks. Each program that uses it holds a reference, so it lives as long
/// as they are loaded.
#[derive(Debug)]
pub struct Marks(OwnedFd);

impl AsFd for Marks {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Marks {
    pub fn create() -> Result<Marks, Error> {
        let btf = load_btf()?;
        #[repr(C)]
        #[derive(Default)]
        struct MapCreate {
            map_type: u32,
            key_size: u32,
            value_size: u32,
            max_entries: u32,
            map_flags: u32,
            inner_map_fd: u32,
            numa_node: u32,
            map_name: [u8; 16],
            map_ifindex: u32,
            btf_fd: u32,
            btf_key_type_id: u32,
            btf_value_type_id: u32,
        }
        let mut attr = MapCreate {
            map_type: MAP_TYPE_SK_STORAGE,
            // The kernel requires an int key (the socket is the real key) and no
            // maximum: there is one entry per socket that has one.
            key_size: 4,
            value_size: MARKS_SIZE,
            max_entries: 0,
            map_flags: F_NO_PREALLOC | F_CLONE,
            btf_fd: btf.as_raw_fd() as u32,
            btf_key_type_id: INT,
            btf_value_type_id: MARKS,
            ..MapCreate::default()
        };
        attr.map_name[..sys::PROGRAM_NAME.len()].copy_from_slice(sys::PROGRAM_NAME.as_bytes());
        // SAFETY: MapCreate is BPF_MAP_CREATE's attribute block; it holds no pointers.
        let fd = unsafe { sys::bpf_fd(BPF_MAP_CREATE, "BPF_MAP_CREATE", &mut attr) }?;
        Ok(Marks(fd))
    }

    /// Marks every option of `socket` as the program's own, from user space: the key of
    /// socket storage, there, is a descriptor of the socket (Linux 5.2,
    /// `bpf_fd_sk_storage_update_elem`). For a socket someone configured before the
    /// marking program was attached, which it never saw: the settings program then
    /// leaves alone every connection accepted on it, as they inherit the marks
    /// (`BPF_F_CLONE`).
    pub fn mark_all(&self, socket: BorrowedFd) -> Result<(), Error> {
        #[repr(C)]
        struct UpdateElem {
            map_fd: u32,
            /// Named, so that it is zero rather than uninitialised padding.
            _pad: u32,
            key: u64,
            value: u64,
            flags: u64,
        }
        let key: libc::c_int = socket.as_raw_fd();
        let mut marks = [0u8; MARKS_SIZE as usize];
        for option in crate::option::ALL {
            marks[option.mark as usize] = 1;
        }
        let mut attr = UpdateElem {
            map_fd: self.0.as_raw_fd() as u32,
            _pad: 0,
            key: (&raw const key) as u64,
            value: marks.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: UpdateElem is BPF_MAP_UPDATE_ELEM's attribute block; `key` and
        // `marks` are readable for the map's key and value sizes for the whole call.
        if unsafe { sys::bpf(BPF_MAP_UPDATE_ELEM, &mut attr) } < 0 {
            return Err(sys::failed("BPF_MAP_UPDATE_ELEM"));
        }
        Ok(())
    }
}

/// Type IDs in the BTF below: 1 is `int`, 2 is `int[2]`, the marks' eight bytes.
const INT: u32 = 1;
const MARKS: u32 = 2;

/// Socket storage takes its key and value types as BTF (Documentation/bpf/btf.rst),
/// which the kernel checks: a 32-bit int key. This is the smallest description that
/// passes: a header, two types (`int` and `int[2]`) and the string "int". The map keeps its own reference; this descriptor can go.
fn load_btf() -> Result<OwnedFd, Error> {
    const MAGIC: u16 = 0xeb9f;
    const HEADER_LEN: u32 = 24;
    const KIND_INT: u32 = 1 << 24;
    const KIND_ARRAY: u32 = 3 << 24;
    // `int`: 4 bytes, signed, 32 bits at offset 0.
    let int = [1, KIND_INT, 4, (1 << 24) | 32];
    // The marks: elements of type INT, indexed by INT, as many as fill MARKS_SIZE.
    let marks = [0, KIND_ARRAY, 0, INT, INT, MARKS_SIZE / 4];
    let types: Vec<u32> = int.into_iter().chain(marks).collect();
    let strings = b"\0int\0";
    let types_len = (types.len() * 4) as u32;
    let mut blob = Vec::new();
    blob.extend_from_slice(&MAGIC.to_ne_bytes());
    blob.extend_from_slice(&[1, 0]); // version 1, no flags
    for word in [HEADER_LEN, 0, types_len, types_len, strings.len() as u32] {
        blob.extend_from_slice(&word.to_ne_bytes());
    }
    for word in types {
        blob.extend_from_slice(&word.to_ne_bytes());
    }
    blob.extend_from_slice(strings);

    #[repr(C)]
    #[derive(Default)]
    struct BtfLoad {
        btf: u64,
        btf_log_buf: u64,
        btf_size: u32,
        btf_log_size: u32,
        btf_log_level: u32,
        /// Named, so that it is zero rather than uninitialised padding.
        _pad: u32,
    }
    let mut attr = BtfLoad {
        btf: blob.as_ptr() as u64,
        btf_size: blob.len() as u32,
        ..BtfLoad::default()
    };
    // SAFETY: BtfLoad is BPF_BTF_LOAD's attribute block; `blob` outlives the call and
    // is `btf_size` bytes long; no log buffer is given.
    unsafe { sys::bpf_fd(BPF_BTF_LOAD, "BPF_BTF_LOAD", &mut attr) }
}
