defmodule Mix.Tasks.Thunderbolt.Mcp do
  @shortdoc "Runs the MCP server (ONNX inference tools) on stdin and stdout"

  @moduledoc """
  Runs `Thunderbolt.MCP`, a Model Context Protocol server, over stdio: one
  JSON-RPC message per line on standard input and standard output. Logs go
  to standard error only. The server stops when standard input closes.

      mix thunderbolt.mcp --model-dir priv/models

  An MCP client starts it as a subprocess; see the README's "MCP server"
  section for a client configuration entry.

  ## Options

    * `--model-dir DIR` — the directory of `.onnx` models to serve; tool
      calls cannot reach files outside it. Defaults to
      `THUNDERBOLT_MODEL_DIR`, then `config :thunderbolt, :model_dir`, then
      `priv/models`.
    * `--max-message-bytes N` — refuse messages longer than `N` bytes
      (default 8 MiB).
    * `--max-concurrency N` — run at most `N` tool calls at once (default:
      the number of schedulers).
    * `--no-compile` — do not compile the project first (use this when the
      build is known to be current, for example when a test already built
      it, and to start faster).
    * `--no-deps-check` — do not check dependencies.
  """

  use Mix.Task

  @switches [
    model_dir: :string,
    max_message_bytes: :integer,
    max_concurrency: :integer,
    compile: :boolean,
    deps_check: :boolean
  ]

  @impl Mix.Task
  def run(args) do
    {opts, rest, invalid} = OptionParser.parse(args, strict: @switches)

    cond do
      invalid != [] ->
        Mix.raise("mix thunderbolt.mcp: invalid option #{inspect(invalid)}")

      rest != [] ->
        Mix.raise("mix thunderbolt.mcp: unexpected argument #{inspect(rest)}")

      true ->
        :ok
    end

    # Standard output carries the protocol and nothing else.
    logs_to_stderr()
    with_stdout_on_stderr(fn -> Mix.Task.run("app.start", start_args(opts)) end)
    logs_to_stderr()

    model_dir = Path.expand(opts[:model_dir] || Thunderbolt.ModelDir.dir())

    server_opts =
      [model_dir: model_dir] ++ Keyword.take(opts, [:max_message_bytes, :max_concurrency])

    case Thunderbolt.MCP.serve(server_opts) do
      :ok -> :ok
      {:error, reason} -> Mix.raise("MCP server stopped: #{inspect(reason)}")
    end
  end

  defp start_args(opts) do
    if(opts[:compile] == false, do: ["--no-compile"], else: []) ++
      if opts[:deps_check] == false, do: ["--no-deps-check"], else: []
  end

  defp logs_to_stderr do
    {:ok, _} = Application.ensure_all_started(:logger)
    Logger.configure_backend(:console, device: :standard_error)
  end

  # Compiling prints progress through Mix.shell() and the NIF build streams
  # cargo's output, both to the group leader. Point the group leader at
  # standard error while that happens, so none of it reaches the client.
  defp with_stdout_on_stderr(fun) do
    leader = Process.group_leader()
    Process.group_leader(self(), Process.whereis(:standard_error))

    try do
      fun.()
    after
      Process.group_leader(self(), leader)
    end
  end
end
