//! ELF files as the command reads them: a program `check` judges (its word size,
//! architecture, loader, Go build information) and a library given to preload (a
//! shared object of this machine's architecture that defines `socket`).

use object::elf::{
    EM_386, EM_AARCH64, EM_ARM, EM_NONE, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64, ET_DYN, PT_INTERP,
    SHN_UNDEF, SHT_DYNSYM,
};
use object::read::elf::{FileHeader, ProgramHeader, Sym};

/// What `check` reads from an ELF file.
pub struct Elf {
    pub bits: u8,
    pub machine: u16,
    pub interpreter: Option<String>,
    pub go: bool,
}

impl Elf {
    pub fn parse(data: &[u8]) -> Result<Elf, String> {
        let kind = object::FileKind::parse(data).map_err(|err| err.to_string())?;
        match kind {
            object::FileKind::Elf32 => {
                Elf::read::<object::elf::FileHeader32<object::Endianness>>(data, 32)
            }
            object::FileKind::Elf64 => {
                Elf::read::<object::elf::FileHeader64<object::Endianness>>(data, 64)
            }
            _ => Err("not an ELF file".into()),
        }
    }

    fn read<H: FileHeader<Endian = object::Endianness>>(
        data: &[u8],
        bits: u8,
    ) -> Result<Elf, String> {
        let header = H::parse(data).map_err(|err| err.to_string())?;
        let endian = header.endian().map_err(|err| err.to_string())?;
        let mut interpreter = None;
        for segment in header
            .program_headers(endian, data)
            .map_err(|err| err.to_string())?
        {
            if segment.p_type(endian) == PT_INTERP {
                let bytes = segment
                    .data(endian, data)
                    .map_err(|()| "PT_INTERP outside the file".to_string())?;
                let bytes = bytes.split(|&b| b == 0).next().unwrap_or_default();
                interpreter = Some(String::from_utf8_lossy(bytes).into_owned());
            }
        }
        // Go writes its build information into .go.buildinfo (with a stripped section
        // table, the block still starts with this magic; debug/buildinfo reads it so).
        let sections = header
            .sections(endian, data)
            .map_err(|err| err.to_string())?;
        let go = sections.section_by_name(endian, b".go.buildinfo").is_some()
            || sections
                .section_by_name(endian, b".note.go.buildid")
                .is_some()
            || (sections.is_empty() && contains(data, b"\xff Go buildinf:"));
        Ok(Elf {
            bits,
            machine: header.e_machine(endian).0,
            interpreter,
            go,
        })
    }
}

fn contains(data: &[u8], needle: &[u8]) -> bool {
    data.windows(needle.len()).any(|window| window == needle)
}

/// The word size of this command, built for the same target as the library.
pub fn own_bits() -> u8 {
    usize::BITS as u8
}

/// The architecture of this command, built for the same target as the library.
pub fn own_machine() -> u16 {
    let machine = if cfg!(target_arch = "x86_64") {
        EM_X86_64
    } else if cfg!(target_arch = "x86") {
        EM_386
    } else if cfg!(target_arch = "aarch64") {
        EM_AARCH64
    } else if cfg!(target_arch = "arm") {
        EM_ARM
    } else if cfg!(target_arch = "riscv64") {
        EM_RISCV
    } else if cfg!(target_arch = "powerpc64") {
        EM_PPC64
    } else if cfg!(target_arch = "s390x") {
        EM_S390
    } else {
        EM_NONE
    };
    machine.0
}

pub fn machine_name(machine: u16) -> String {
    let names = [
        (EM_X86_64, "x86-64"),
        (EM_386, "i386"),
        (EM_AARCH64, "arm64 (aarch64)"),
        (EM_ARM, "32-bit arm"),
        (EM_RISCV, "riscv"),
        (EM_PPC64, "ppc64"),
        (EM_S390, "s390x"),
    ];
    names
        .iter()
        .find(|(em, _)| em.0 == machine)
        .map(|(_, name)| name.to_string())
        .unwrap_or_else(|| format!("ELF machine {machine}"))
}

/// Why `data` cannot be preloaded into this command's programs, if it cannot: it must
/// be an ELF shared object (`ET_DYN`) of this machine's word size and architecture
/// whose dynamic symbol table defines `socket`, the one function a keepalive library
/// must interpose. ld.so(8) refuses anything else with an error in every program it
/// starts, which then runs without keepalive.
pub fn preloadable(data: &[u8]) -> Result<(), String> {
    let elf = Elf::parse(data).map_err(|err| format!("not an ELF file ({err})"))?;
    if elf.bits != own_bits() || elf.machine != own_machine() {
        return Err(format!(
            "a {}-bit {} file, not {}-bit {}",
            elf.bits,
            machine_name(elf.machine),
            own_bits(),
            machine_name(own_machine())
        ));
    }
    let defines_socket = match object::FileKind::parse(data).map_err(|err| err.to_string())? {
        object::FileKind::Elf32 => {
            shared_with_socket::<object::elf::FileHeader32<object::Endianness>>(data)
        }
        _ => shared_with_socket::<object::elf::FileHeader64<object::Endianness>>(data),
    }?;
    if defines_socket {
        Ok(())
    } else {
        Err("a shared object that does not define socket(): not a keepalive library".into())
    }
}

/// Whether the file is a shared object whose dynamic symbols define `socket`; an error
/// when it is no shared object at all.
fn shared_with_socket<H: FileHeader<Endian = object::Endianness>>(
    data: &[u8],
) -> Result<bool, String> {
    let header = H::parse(data).map_err(|err| err.to_string())?;
    let endian = header.endian().map_err(|err| err.to_string())?;
    if header.e_type(endian) != ET_DYN {
        return Err("not a shared object (an executable, or an object file)".into());
    }
    let sections = header
        .sections(endian, data)
        .map_err(|err| err.to_string())?;
    let symbols = sections
        .symbols(endian, data, SHT_DYNSYM)
        .map_err(|err| err.to_string())?;
    Ok(symbols.iter().any(|symbol| {
        symbol.st_shndx(endian) != SHN_UNDEF
            && symbols.symbol_name(endian, symbol) == Ok(b"socket".as_slice())
    }))
}
