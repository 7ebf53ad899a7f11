//! Link settings for the shared object that programs load with LD_PRELOAD.

fn main() {
    // A versioned SONAME, as for any system library: packages install
    // libkeepalive.so.0 and operators may preload either name.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libkeepalive.so.0");
    // Full RELRO: the GOT holding the real socket/accept pointers becomes read-only
    // after loading, and every symbol is bound at load time instead of lazily in the
    // middle of a host's accept().
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,relro,-z,now");
    // The shim never needs an executable stack; say so explicitly so that loading it
    // can never make the host's stack executable.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,noexecstack");
    // No C start files (crti.o, crtbeginS.o, ...): they run no code this library needs
    // (its constructor is in .init_array, which ld.so runs itself, and it has no
    // destructors or C++ transactional memory), and they bring four weak undefined
    // symbols (__gmon_start__, _ITM_*, __cxa_finalize), each a lookup that searches
    // every loaded object and fails, in every process that loads the library.
    println!("cargo:rustc-cdylib-link-arg=-nostartfiles");
    // Refuse to link with any undefined symbol. In release builds this turns the panic
    // handler's reference to an undefined symbol into a build error if any panic path
    // survives optimisation (see src/lib.rs).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,defs");
}
