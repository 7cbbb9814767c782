defmodule Mix.Tasks.Compile.ThunderboltNif do
  @moduledoc """
  Builds the Rust NIF with cargo and installs it into `priv/native/`.

  Cargo does the incremental work, so calling it on every `mix compile` is
  cheap when nothing changed. Set `THUNDERBOLT_NIF_PROFILE=debug` for a
  faster, unoptimised build while hacking on the Rust side.
  """
  use Mix.Task.Compiler

  @crate "thunderbolt_nif"

  @impl true
  def run(_args) do
    profile = System.get_env("THUNDERBOLT_NIF_PROFILE", "release")
    cargo = System.find_executable("cargo") || Path.expand("~/.cargo/bin/cargo")

    unless File.exists?(cargo) do
      Mix.raise("cargo not found: install Rust (./scripts/setup.sh does) and retry")
    end

    args = ["build", "-p", @crate] ++ if(profile == "release", do: ["--release"], else: [])
    Mix.shell().info("cargo #{Enum.join(args, " ")}")

    case System.cmd(cargo, args, stderr_to_stdout: true, into: IO.stream(:stdio, :line)) do
      {_, 0} -> install(profile)
      {_, status} -> Mix.raise("cargo build failed with status #{status}")
    end
  end

  defp install(profile) do
    target_dir = System.get_env("CARGO_TARGET_DIR", "target")
    built = Path.join([target_dir, profile, "lib#{@crate}.so"])
    dest = Path.join(["priv", "native", "lib#{@crate}.so"])
    File.mkdir_p!(Path.dirname(dest))

    if stale?(built, dest) do
      # Rename over the old file instead of writing into it: a running VM
      # may have the old library mapped.
      tmp = dest <> ".tmp"
      File.cp!(built, tmp)
      File.rename!(tmp, dest)
      {:ok, []}
    else
      {:noop, []}
    end
  end

  defp stale?(built, dest) do
    case {File.stat(built), File.stat(dest)} do
      {{:ok, b}, {:ok, d}} -> b.mtime > d.mtime or b.size != d.size
      _ -> true
    end
  end
end

defmodule Thunderbolt.MixProject do
  use Mix.Project

  @version "0.1.0"

  def project do
    [
      app: :thunderbolt,
      version: @version,
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:thunderbolt_nif] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: [],
      # JSON comes from Debian's erlang-jiffy, which is not a Mix dependency.
      xref: [exclude: [:jiffy]],
      aliases: aliases(),
      docs: [main: "readme", extras: ["README.md"]]
    ]
  end

  def application do
    [extra_applications: [:logger], mod: {Thunderbolt.Application, []}]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  defp aliases do
    [
      "rust.fmt": ["cmd cargo fmt --all"],
      "rust.lint": ["cmd cargo clippy --workspace --all-targets -- -D warnings"],
      "thunderbolt.mcp": [&compile_to_stderr/1, "thunderbolt.mcp"]
    ]
  end

  # `mix thunderbolt.mcp` speaks MCP on stdout, but Mix compiles a project to
  # find the project's own tasks, and compiling prints to stdout. So compile
  # first, with the output on stderr (or only load paths under --no-compile).
  defp compile_to_stderr(_args) do
    task = if "--no-compile" in System.argv(), do: "loadpaths", else: "compile"
    leader = Process.group_leader()
    Process.group_leader(self(), Process.whereis(:standard_error))

    try do
      Mix.Task.run(task, [])
    after
      Process.group_leader(self(), leader)
    end
  end
end
