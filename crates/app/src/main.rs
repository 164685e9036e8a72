// mimalloc: the server allocates many short-lived buffers from several threads (bodies,
// JSON, rows); glibc's malloc showed up as about a tenth of the profile, mostly in
// consolidation and free-list upkeep.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    followthrough::cli::main()
}
