fn main() -> std::process::ExitCode {
    followthrough::cli::main()
}
