//! The Debian multiarch triplet of the build target (`x86_64-linux-gnu`), for finding
//! the library where the Debian package installs it: /usr/lib/<triplet>/.

fn main() {
    let var = |name: &str| std::env::var(format!("CARGO_CFG_TARGET_{name}")).unwrap_or_default();
    let little = var("ENDIAN") == "little";
    let arch = match var("ARCH").as_str() {
        "x86" => "i386".to_string(),
        "powerpc64" if little => "powerpc64le".to_string(),
        "mips64" if little => "mips64el".to_string(),
        "mips" if little => "mipsel".to_string(),
        other => other.to_string(),
    };
    // arm-linux-gnueabihf: the ABI is part of the environment's name.
    let env = format!("{}{}", var("ENV"), var("ABI"));
    println!(
        "cargo:rustc-env=KEEPALIVE_MULTIARCH={arch}-{}-{env}",
        var("OS")
    );
    println!("cargo:rerun-if-changed=build.rs");
}
