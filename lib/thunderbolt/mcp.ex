defmodule Thunderbolt.MCP do
  @moduledoc """
  A Model Context Protocol (MCP) server that exposes ONNX inference to LLM
  agents as tools: `onnx_infer`, `list_models` and `model_info` (see
  `Thunderbolt.MCP.Tools`).

  It speaks MCP's stdio transport: one JSON-RPC 2.0 message per line in,
  one per line out, and it stops when its input reaches end of file. From
  a shell, or from an MCP client's configuration, run it with the Mix task:

      mix thunderbolt.mcp --model-dir priv/models

  In an application, start it under a supervisor with its own IO devices
  (any Erlang IO device: a `StringIO`, a file, a socket wrapper):

      children = [
        {Thunderbolt.MCP, model_dir: "priv/models", input: input_device, output: output_device}
      ]

  Its child spec is `restart: :transient`: the server exits normally at the
  end of its input, and is restarted only if it crashes.

  Reading and writing are raw bytes: the server puts both devices in binary
  mode with `encoding: :latin1` so that every byte on the wire reaches the
  JSON decoder unchanged (invalid UTF-8 is answered with a parse error, not
  an IO failure). Anything else written to the output device would corrupt
  the protocol, so with `:stdio`, keep logs off standard output
  (`mix thunderbolt.mcp` sends them to standard error).

  Requests are handled one at a time in arrival order; the protocol rules
  live in `Thunderbolt.MCP.Protocol`.
  """

  require Logger

  alias Thunderbolt.MCP.Protocol

  @doc """
  A child spec for a supervisor. See `start_link/1` for the options.
  """
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    %{
      id: Keyword.get(opts, :name, __MODULE__),
      start: {__MODULE__, :start_link, [opts]},
      restart: :transient
    }
  end

  @doc """
  Starts a server process linked to the caller that serves until `:input`
  ends, then exits with reason `:normal`.

  ## Options

    * `:model_dir` — the directory models are served from; model paths in
      tool calls are confined to it (default `Thunderbolt.ModelDir.dir/0`).
    * `:input` — the IO device to read messages from (default `:stdio`).
    * `:output` — the IO device to write messages to (default `:stdio`).
    * `:max_message_bytes` — longer lines are refused without being decoded
      (default 8 MiB).
    * `:name` — a name to register the process under.
  """
  @spec start_link(keyword()) :: {:ok, pid()} | {:error, term()}
  def start_link(opts \\ []) do
    opts = validate_options!(opts)
    :proc_lib.start_link(__MODULE__, :init, [self(), opts])
  end

  @doc false
  def init(parent, opts) do
    case register(opts[:name]) do
      :ok ->
        :proc_lib.init_ack(parent, {:ok, self()})
        serve_validated(opts)

      {:error, reason} ->
        :proc_lib.init_ack(parent, {:error, reason})
    end
  end

  @doc """
  Serves in the calling process until `:input` reaches end of file, then
  returns `:ok`; returns `{:error, reason}` if a device fails. Takes the
  options of `start_link/1` except `:name`.

      iex> {:ok, input} = StringIO.open(~s({"jsonrpc":"2.0","id":1,"method":"ping"}\\n))
      iex> {:ok, output} = StringIO.open("")
      iex> Thunderbolt.MCP.serve(input: input, output: output, model_dir: System.tmp_dir!())
      :ok
      iex> StringIO.flush(output)
      ~s({"jsonrpc":"2.0","id":1,"result":{}}\\n)
  """
  @spec serve(keyword()) :: :ok | {:error, term()}
  def serve(opts \\ []) do
    opts |> validate_options!() |> Keyword.delete(:name) |> serve_validated()
  end

  defp serve_validated(opts) do
    input = opts[:input]
    output = opts[:output]
    :ok = binary_mode(input)
    :ok = binary_mode(output)

    state = Protocol.new(model_dir: opts[:model_dir], max_message_bytes: opts[:max_message_bytes])

    Logger.info("MCP server ready, serving models from #{opts[:model_dir]}")
    loop(state, input, output)
  end

  defp loop(state, input, output) do
    case IO.binread(input, :line) do
      :eof ->
        Logger.info("MCP server: input closed, stopping")
        :ok

      {:error, reason} ->
        Logger.error("MCP server: cannot read input: #{inspect(reason)}")
        {:error, reason}

      line when is_binary(line) ->
        {replies, state} = handle_line(state, line)

        case write(output, replies) do
          :ok -> loop(state, input, output)
          {:error, reason} -> {:error, reason}
        end
    end
  end

  # Protocol.handle_line/2 does not raise; this is the last line of defence
  # that keeps one bad line from ending the session.
  defp handle_line(state, line) do
    Protocol.handle_line(state, line)
  catch
    kind, reason ->
      Logger.error("MCP server: " <> Exception.format(kind, reason, __STACKTRACE__))
      error = Thunderbolt.MCP.JSONRPC.error(nil, -32603, "Internal error")
      {[Thunderbolt.MCP.JSONRPC.encode(error)], state}
  end

  defp write(_output, []), do: :ok

  defp write(output, replies) do
    case IO.binwrite(output, Enum.map(replies, &[&1, ?\n])) do
      :ok ->
        :ok

      {:error, reason} ->
        Logger.error("MCP server: cannot write output: #{inspect(reason)}")
        {:error, reason}
    end
  end

  # Separate calls: some devices (StringIO) refuse a list with an option they
  # do not know. Devices that take no options at all (a raw file) are
  # byte-oriented already, so a refusal is fine.
  defp binary_mode(device) do
    device = erlang_device(device)
    _ = :io.setopts(device, encoding: :latin1)
    _ = :io.setopts(device, binary: true)
    :ok
  end

  # `:stdio` is Elixir's name; Erlang's :io functions only know :standard_io.
  defp erlang_device(:stdio), do: :standard_io
  defp erlang_device(:stderr), do: :standard_error
  defp erlang_device(device), do: device

  defp register(nil), do: :ok

  defp register(name) do
    Process.register(self(), name)
    :ok
  rescue
    ArgumentError -> {:error, {:already_registered, name}}
  end

  defp validate_options!(opts) do
    opts =
      Keyword.validate!(opts, [
        :name,
        model_dir: nil,
        input: :stdio,
        output: :stdio,
        max_message_bytes: Protocol.default_max_message_bytes()
      ])

    Keyword.update!(opts, :model_dir, fn
      nil -> Thunderbolt.ModelDir.dir()
      dir when is_binary(dir) -> Path.expand(dir)
      other -> raise ArgumentError, ":model_dir must be a path, got #{inspect(other)}"
    end)
  end
end
