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

  Tool calls run concurrently, each in its own process, up to
  `:max_concurrency` at a time, so a slow inference does not hold up the
  agent's other calls; their answers are written as they finish, each with
  its request's id, as JSON-RPC allows. Everything else is answered at once,
  in arrival order. A `notifications/cancelled` stops the named call if it
  is still running, and that call gets no answer, as the spec asks. When
  `:max_concurrency` calls are running, the server reads no further input
  until one finishes. At the end of the input it finishes the calls in
  flight, then stops. The protocol rules live in
  `Thunderbolt.MCP.Protocol`.
  """

  require Logger

  alias Thunderbolt.MCP.{JSONRPC, Protocol}

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
    * `:max_concurrency` — how many tool calls may run at once (default
      `System.schedulers_online()`).
    * `:tools` — the module that lists and runs the tools (default
      `Thunderbolt.MCP.Tools`); see `Thunderbolt.MCP.Protocol.new/1`.
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

    protocol =
      Protocol.new(
        model_dir: opts[:model_dir],
        max_message_bytes: opts[:max_message_bytes],
        tools: opts[:tools]
      )

    Logger.info("MCP server ready, serving models from #{opts[:model_dir]}")
    server = self()
    reader = spawn_link(fn -> read_lines(input, server) end)

    state = %{
      protocol: protocol,
      output: output,
      reader: reader,
      max_calls: opts[:max_concurrency],
      # monitor ref => request id, and request id => {pid, monitor ref}
      calls: %{},
      ids: %{},
      reader_waiting: false,
      eof: false
    }

    try do
      loop(state)
    after
      Process.unlink(reader)
      Process.exit(reader, :kill)
    end
  end

  # Reads one line at a time and waits for the server's go-ahead before the
  # next, so that input is read only as fast as calls are taken on.
  defp read_lines(input, server) do
    case IO.binread(input, :line) do
      line when is_binary(line) ->
        send(server, {self(), {:line, line}})

        receive do
          :next -> read_lines(input, server)
        end

      :eof ->
        send(server, {self(), :eof})

      {:error, reason} ->
        send(server, {self(), {:error, reason}})
    end
  end

  defp loop(%{eof: true, calls: calls}) when map_size(calls) == 0 do
    Logger.info("MCP server: input closed, stopping")
    :ok
  end

  defp loop(%{reader: reader} = state) do
    receive do
      {^reader, {:line, line}} ->
        state |> handle_line(line) |> continue()

      {^reader, :eof} ->
        loop(%{state | eof: true})

      {^reader, {:error, reason}} ->
        Logger.error("MCP server: cannot read input: #{inspect(reason)}")
        stop_calls(state)
        {:error, reason}

      {:call_done, ref, reply} when is_map_key(state.calls, ref) ->
        Process.demonitor(ref, [:flush])
        state = forget(state, ref)
        continue(write(state.output, [reply]), state)

      {:DOWN, ref, :process, _pid, reason} when is_map_key(state.calls, ref) ->
        # Calls catch their own errors; this is a call killed from outside.
        id = state.calls[ref]
        Logger.error("MCP server: the call for request #{inspect(id)} died: #{inspect(reason)}")
        error = JSONRPC.error(id, JSONRPC.internal_error(), "Internal error: the tool call died")
        state = forget(state, ref)
        continue(write(state.output, [JSONRPC.encode(error)]), state)
    end
  end

  defp continue(:ok, state), do: continue({:ok, state})
  defp continue({:error, _reason} = error, state), do: continue({error, state})

  defp continue({:ok, state}), do: state |> go_ahead() |> loop()

  # The output is gone: nobody can be answered any more.
  defp continue({{:error, reason}, state}) do
    stop_calls(state)
    {:error, reason}
  end

  defp handle_line(state, line) do
    {actions, protocol} = dispatch(state.protocol, line)
    act(actions, %{state | protocol: protocol, reader_waiting: true})
  end

  # Protocol.dispatch_line/2 does not raise; this is the last line of
  # defence that keeps one bad line from ending the session.
  defp dispatch(protocol, line) do
    Protocol.dispatch_line(protocol, line)
  catch
    kind, reason ->
      Logger.error("MCP server: " <> Exception.format(kind, reason, __STACKTRACE__))
      error = JSONRPC.error(nil, JSONRPC.internal_error(), "Internal error")
      {[{:reply, JSONRPC.encode(error)}], protocol}
  end

  defp act([], state), do: {:ok, state}

  defp act([{:reply, reply} | actions], state) do
    case write(state.output, [reply]) do
      :ok -> act(actions, state)
      error -> {error, state}
    end
  end

  defp act([{:call, id, fun} | actions], state) do
    server = self()

    {pid, ref} =
      spawn_monitor(fn ->
        ref = receive(do: ({:run_as, ref} -> ref))
        send(server, {:call_done, ref, fun.()})
      end)

    send(pid, {:run_as, ref})

    state = %{
      state
      | calls: Map.put(state.calls, ref, id),
        ids: Map.put(state.ids, id, {pid, ref})
    }

    act(actions, state)
  end

  defp act([{:cancel, id} | actions], state) do
    case state.ids do
      %{^id => {pid, ref}} ->
        Process.demonitor(ref, [:flush])
        Process.exit(pid, :kill)
        # A reply it sent just before is dropped with it.
        receive do
          {:call_done, ^ref, _reply} -> :ok
        after
          0 -> :ok
        end

        act(actions, forget(state, ref))

      _ ->
        act(actions, state)
    end
  end

  defp forget(state, ref) do
    {id, calls} = Map.pop(state.calls, ref)
    %{state | calls: calls, ids: Map.delete(state.ids, id)}
  end

  # The reader waits for this before reading on; it gets it once a call
  # slot is free.
  defp go_ahead(%{reader_waiting: true, eof: false} = state)
       when map_size(state.calls) < state.max_calls do
    send(state.reader, :next)
    %{state | reader_waiting: false}
  end

  defp go_ahead(state), do: state

  defp stop_calls(state) do
    for {_id, {pid, ref}} <- state.ids do
      Process.demonitor(ref, [:flush])
      Process.exit(pid, :kill)
    end

    :ok
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
        max_message_bytes: Protocol.default_max_message_bytes(),
        max_concurrency: System.schedulers_online(),
        tools: Thunderbolt.MCP.Tools
      ])

    unless is_integer(opts[:max_concurrency]) and opts[:max_concurrency] > 0 do
      raise ArgumentError,
            ":max_concurrency must be a positive integer, got #{inspect(opts[:max_concurrency])}"
    end

    Protocol.check_tools!(opts[:tools])

    Keyword.update!(opts, :model_dir, fn
      nil -> Thunderbolt.ModelDir.dir()
      dir when is_binary(dir) -> Path.expand(dir)
      other -> raise ArgumentError, ":model_dir must be a path, got #{inspect(other)}"
    end)
  end
end
