defmodule Thunderbolt.MCP.Protocol do
  @moduledoc """
  The MCP server's protocol state machine: one line in, at most one line
  out. It knows nothing about IO, so it can be driven directly:

      iex> state = Thunderbolt.MCP.Protocol.new(model_dir: "/tmp")
      iex> {[reply], _state} = Thunderbolt.MCP.Protocol.handle_line(state, ~s({"jsonrpc":"2.0","id":1,"method":"ping"}))
      iex> reply
      ~s({"jsonrpc":"2.0","id":1,"result":{}})

  ## What it implements

  The initialize-based lifecycle of the 2025 MCP revisions (`2025-03-26`,
  `2025-06-18`, `2025-11-25`, and `2024-11-05` as well):

    * `initialize` answers the client's protocol version when it is one of
      `supported_versions/0`, otherwise our latest, as the lifecycle's
      version negotiation prescribes; `notifications/initialized` completes
      the handshake. Requests other than `initialize` and `ping` before
      `initialize` are refused with -32600.
    * `ping` returns an empty result at any time.
    * `tools/list` and `tools/call` (see `Thunderbolt.MCP.Tools`). An
      unknown tool or arguments that are not an object are protocol errors
      (-32602); everything wrong inside the arguments, and every failure of
      the tool itself, is a tool result with `isError: true`, which the spec
      reserves for errors a language model can correct.
    * `server/discover`, the probe of the stateless `2026-07-28` revision,
      is refused with -32601 (method not found). This server speaks the
      initialize-based revisions only; the `2026-07-28` stdio binding tells
      dual-era clients that a probe answered with any error other than a
      modern one (such as -32022, unsupported protocol version) means a
      legacy server, so they fall back to `initialize` at once instead of
      waiting for a timeout.
    * Notifications never get a response. `notifications/cancelled` names
      a request; `dispatch_line/2` reports it so that a server running tool
      calls concurrently (`Thunderbolt.MCP`) can stop that call and, as
      the spec asks, not answer it. `handle_line/2` runs every call before
      it returns, so there a cancellation always comes too late.

  Errors follow JSON-RPC: -32700 for a line that is not JSON, -32600 for a
  message that is not a request (including batches, which MCP removed in
  2025-06-18, and lines over `:max_message_bytes`), -32601 for an unknown
  method, -32602 for parameters of the wrong shape, and -32603 if the
  server itself fails. No line, however malformed, stops the server.
  """

  require Logger

  alias Thunderbolt.MCP.{JSONRPC, Tools}

  @supported_versions ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"]
  @default_max_message_bytes 8 * 1024 * 1024

  @enforce_keys [:model_dir, :max_message_bytes]
  defstruct [
    :model_dir,
    :max_message_bytes,
    :protocol_version,
    :client_info,
    tools: Tools,
    phase: :new
  ]

  @typedoc """
  `phase` is `:new` until `initialize` is answered, then `:initializing`
  until `notifications/initialized` arrives, then `:ready`.
  """
  @type t :: %__MODULE__{
          model_dir: Path.t(),
          max_message_bytes: pos_integer(),
          tools: module(),
          protocol_version: String.t() | nil,
          client_info: map() | nil,
          phase: :new | :initializing | :ready
        }

  @doc """
  The protocol revisions this server speaks, latest first.

      iex> hd(Thunderbolt.MCP.Protocol.supported_versions())
      "2025-11-25"
  """
  @spec supported_versions() :: [String.t()]
  def supported_versions, do: @supported_versions

  @doc """
  The default limit on one message, in bytes (8 MiB).
  """
  @spec default_max_message_bytes() :: pos_integer()
  def default_max_message_bytes, do: @default_max_message_bytes

  @doc """
  Whether `module` can serve as the `:tools` of `new/1`: it exports
  `names/0`, `instructions/0`, `list/1` and `call/3`.

      iex> Thunderbolt.MCP.Protocol.tools_module?(Thunderbolt.MCP.Tools)
      true
      iex> Thunderbolt.MCP.Protocol.tools_module?(String)
      false
  """
  @spec tools_module?(term()) :: boolean()
  def tools_module?(module) do
    is_atom(module) and Code.ensure_loaded?(module) and
      Enum.all?([names: 0, instructions: 0, list: 1, call: 3], fn {name, arity} ->
        function_exported?(module, name, arity)
      end)
  end

  @doc false
  # Raises unless tools_module?/1; shared with Thunderbolt.MCP's options.
  @spec check_tools!(term()) :: :ok
  def check_tools!(module) do
    unless tools_module?(module) do
      raise ArgumentError,
            ":tools must be a module with names/0, instructions/0, list/1 and call/3, " <>
              "got #{inspect(module)}"
    end

    :ok
  end

  @doc """
  A fresh protocol state.

  ## Options

    * `:model_dir` — the directory models are served from (required).
    * `:max_message_bytes` — longer lines are refused with -32600 without
      being decoded (default `default_max_message_bytes/0`).
    * `:tools` — the module that lists and runs the tools (default
      `Thunderbolt.MCP.Tools`). Another module with the same four
      functions (`names/0`, `instructions/0`, `list/1`, `call/3`) can add
      tools of its own, for instance by delegating to `Thunderbolt.MCP.Tools`
      for the built-in ones.
  """
  @spec new(keyword()) :: t()
  def new(opts) do
    opts =
      Keyword.validate!(opts, [
        :model_dir,
        max_message_bytes: @default_max_message_bytes,
        tools: Tools
      ])

    check_tools!(opts[:tools])

    unless is_binary(opts[:model_dir]) do
      raise ArgumentError, ":model_dir must be a path, got #{inspect(opts[:model_dir])}"
    end

    unless is_integer(opts[:max_message_bytes]) and opts[:max_message_bytes] > 0 do
      raise ArgumentError,
            ":max_message_bytes must be a positive integer, got #{inspect(opts[:max_message_bytes])}"
    end

    %__MODULE__{
      model_dir: opts[:model_dir],
      max_message_bytes: opts[:max_message_bytes],
      tools: opts[:tools]
    }
  end

  @typedoc """
  What a line asks of the server, from `dispatch_line/2`:

    * `{:reply, line}` — write this encoded reply (without a newline);
    * `{:call, id, fun}` — a tool call: `fun.()` runs the tool and returns
      the encoded reply for request `id`; it never raises;
    * `{:cancel, id}` — the client cancelled request `id`: stop its call
      if it is still running, and do not answer it.
  """
  @type action :: {:reply, binary()} | {:call, term(), (() -> binary())} | {:cancel, term()}

  @doc """
  Handles one line (with or without its trailing newline) and returns the
  encoded replies to write, each without a newline: none for a
  notification, a response or a blank line, one otherwise. Tool calls run
  before it returns.
  """
  @spec handle_line(t(), binary()) :: {[binary()], t()}
  def handle_line(%__MODULE__{} = state, line) when is_binary(line) do
    {actions, state} = dispatch_line(state, line)

    replies = for action <- actions, reply = run(action), do: reply

    {replies, state}
  end

  defp run({:reply, reply}), do: reply
  defp run({:call, _id, fun}), do: fun.()
  defp run({:cancel, _id}), do: nil

  @doc """
  Like `handle_line/2`, but leaves tool calls, the one slow kind of
  request, to the caller as `{:call, id, fun}` actions, so that it can run
  them concurrently, and reports cancellations (see `t:action/0`). Every
  other request is answered here, at once.

      iex> state = Thunderbolt.MCP.Protocol.new(model_dir: "/tmp")
      iex> Thunderbolt.MCP.Protocol.dispatch_line(state, ~s({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}))
      {[{:cancel, 7}], state}
  """
  @spec dispatch_line(t(), binary()) :: {[action()], t()}
  def dispatch_line(%__MODULE__{} = state, line) when is_binary(line) do
    line = strip_newline(line)

    cond do
      byte_size(line) > state.max_message_bytes ->
        Logger.warning("refused a #{byte_size(line)}-byte message")

        reply =
          JSONRPC.error(
            JSONRPC.peek_id(line),
            JSONRPC.invalid_request(),
            "Invalid Request: message of #{byte_size(line)} bytes exceeds the limit of " <>
              "#{state.max_message_bytes} bytes",
            %{"size" => byte_size(line), "limit" => state.max_message_bytes}
          )

        {[{:reply, JSONRPC.encode(reply)}], state}

      blank?(line) ->
        {[], state}

      true ->
        handle_decoded(state, JSONRPC.decode(line))
    end
  end

  # A result that cannot be written as JSON still gets an answer with its id,
  # so the client is not left waiting.
  defp encode_reply(reply) do
    JSONRPC.encode(reply)
  catch
    kind, reason ->
      Logger.error("unencodable reply: " <> Exception.format(kind, reason, __STACKTRACE__))
      message = "Internal error: the result could not be encoded as JSON"
      JSONRPC.encode(JSONRPC.error(reply["id"], JSONRPC.internal_error(), message))
  end

  defp handle_decoded(state, {:error, message}) do
    {[reply(JSONRPC.error(nil, JSONRPC.parse_error(), "Parse error: #{message}"))], state}
  end

  defp handle_decoded(state, {:ok, message}) do
    case JSONRPC.classify(message) do
      {:request, id, method, params} ->
        case guarded_request(state, id, method, params) do
          {{:deferred, fun}, state} ->
            {[{:call, id, fn -> guarded_call(id, method, fun) end}], state}

          {reply, state} ->
            {[reply(reply)], state}
        end

      {:notification, "notifications/cancelled", %{"requestId" => id}} ->
        Logger.debug("request #{inspect(id)} cancelled by the client")
        {[{:cancel, id}], state}

      {:notification, method, params} ->
        {[], handle_notification(state, method, params)}

      :response ->
        {[], state}

      {:error, id, code, message} ->
        {[reply(JSONRPC.error(id, code, message))], state}
    end
  end

  defp reply(message), do: {:reply, encode_reply(message)}

  # Runs a deferred tool call; like guarded_request/4, a bug costs one
  # request, answered with -32603.
  defp guarded_call(id, method, fun) do
    encode_reply(fun.())
  catch
    kind, reason ->
      Logger.error("#{method} failed: " <> Exception.format(kind, reason, __STACKTRACE__))

      JSONRPC.encode(
        JSONRPC.error(id, JSONRPC.internal_error(), "Internal error while handling #{method}")
      )
  end

  # A bug in a handler must cost one request, not the server.
  defp guarded_request(state, id, method, params) do
    handle_request(state, id, method, params)
  catch
    kind, reason ->
      Logger.error("#{method} failed: " <> Exception.format(kind, reason, __STACKTRACE__))

      {JSONRPC.error(id, JSONRPC.internal_error(), "Internal error while handling #{method}"),
       state}
  end

  defp handle_request(state, id, "ping", _params), do: {JSONRPC.result(id, %{}), state}

  defp handle_request(%{phase: :new} = state, id, "initialize", params) do
    with {:ok, version} <- fetch_param(params, "protocolVersion", &is_binary/1, "a string"),
         {:ok, _} <- optional_param(params, "capabilities", &is_map/1, "an object"),
         {:ok, client_info} <- optional_param(params, "clientInfo", &is_map/1, "an object") do
      negotiated = if version in @supported_versions, do: version, else: hd(@supported_versions)

      Logger.info(
        "initialize from #{inspect(client_info && client_info["name"])}: " <>
          "client asked for #{version}, speaking #{negotiated}"
      )

      result = %{
        "protocolVersion" => negotiated,
        "capabilities" => %{"tools" => %{"listChanged" => false}},
        "serverInfo" => server_info(negotiated),
        "instructions" => state.tools.instructions()
      }

      state = %{
        state
        | phase: :initializing,
          protocol_version: negotiated,
          client_info: client_info
      }

      {JSONRPC.result(id, result), state}
    else
      {:error, message} -> {JSONRPC.error(id, JSONRPC.invalid_params(), message), state}
    end
  end

  defp handle_request(state, id, "initialize", _params) do
    {JSONRPC.error(id, JSONRPC.invalid_request(), "Invalid Request: already initialized"), state}
  end

  defp handle_request(state, id, "server/discover", _params) do
    {JSONRPC.error(
       id,
       JSONRPC.method_not_found(),
       "Method not found: server/discover. This server implements the initialize-based " <>
         "MCP revisions; send initialize",
       %{"supportedVersions" => @supported_versions}
     ), state}
  end

  defp handle_request(state, id, method, _params)
       when method in ["tools/list", "tools/call"] and state.phase == :new do
    {JSONRPC.error(
       id,
       JSONRPC.invalid_request(),
       "Invalid Request: #{method} before initialize; send initialize first"
     ), state}
  end

  defp handle_request(state, id, "tools/list", params) do
    case optional_param(params, "cursor", &is_binary/1, "a string") do
      {:ok, nil} ->
        {JSONRPC.result(id, %{"tools" => state.tools.list(state.protocol_version)}), state}

      {:ok, cursor} ->
        {JSONRPC.error(
           id,
           JSONRPC.invalid_params(),
           "Invalid params: unknown cursor #{inspect(cursor)}; this server lists all tools at once"
         ), state}

      {:error, message} ->
        {JSONRPC.error(id, JSONRPC.invalid_params(), message), state}
    end
  end

  # The parameters are checked at once; the tool itself runs later, in
  # whichever process runs the deferred call.
  defp handle_request(state, id, "tools/call", params) do
    with {:ok, name} <- fetch_param(params, "name", &is_binary/1, "a string"),
         {:ok, arguments} <- optional_param(params, "arguments", &is_map/1, "an object") do
      opts = [model_dir: state.model_dir, version: state.protocol_version]
      tools = state.tools
      {{:deferred, fn -> tool_reply(tools, id, name, arguments || %{}, opts) end}, state}
    else
      {:error, message} -> {JSONRPC.error(id, JSONRPC.invalid_params(), message), state}
    end
  end

  defp handle_request(state, id, method, _params) do
    {JSONRPC.error(id, JSONRPC.method_not_found(), "Method not found: #{method}"), state}
  end

  defp tool_reply(tools, id, name, arguments, opts) do
    case tools.call(name, arguments, opts) do
      {:ok, result} ->
        JSONRPC.result(id, result)

      {:error, :unknown_tool} ->
        JSONRPC.error(
          id,
          JSONRPC.invalid_params(),
          "Invalid params: unknown tool #{inspect(name)}; tools/list names the tools: " <>
            Enum.join(tools.names(), ", ")
        )
    end
  end

  defp handle_notification(state, "notifications/initialized", _params) do
    case state.phase do
      :initializing -> %{state | phase: :ready}
      _ -> state
    end
  end

  defp handle_notification(state, method, _params) do
    Logger.debug("ignored notification #{method}")
    state
  end

  defp fetch_param(params, key, valid?, expected) do
    case Map.fetch(params, key) do
      {:ok, value} -> check_param(key, value, valid?, expected)
      :error -> {:error, "Invalid params: #{inspect(key)} is required"}
    end
  end

  defp optional_param(params, key, valid?, expected) do
    case Map.get(params, key) do
      nil -> {:ok, nil}
      value -> check_param(key, value, valid?, expected)
    end
  end

  defp check_param(key, value, valid?, expected) do
    if valid?.(value),
      do: {:ok, value},
      else:
        {:error,
         "Invalid params: #{inspect(key)} must be #{expected}, got #{JSONRPC.json_type(value)}"}
  end

  defp server_info(version) do
    info = %{"name" => "thunderbolt", "version" => app_version()}
    # `title` appeared in 2025-06-18.
    if version >= "2025-06-18",
      do: Map.put(info, "title", "Thunderbolt ONNX inference"),
      else: info
  end

  defp app_version do
    case Application.spec(:thunderbolt, :vsn) do
      nil -> "0.0.0"
      vsn -> List.to_string(vsn)
    end
  end

  defp strip_newline(line) do
    size = byte_size(line)

    cond do
      size >= 2 and binary_part(line, size - 2, 2) == "\r\n" -> binary_part(line, 0, size - 2)
      size >= 1 and binary_part(line, size - 1, 1) == "\n" -> binary_part(line, 0, size - 1)
      true -> line
    end
  end

  defp blank?(line), do: line == "" or (byte_size(line) <= 64 and String.trim(line) == "")
end
