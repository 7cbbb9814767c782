defmodule Thunderbolt.MCP.JSONRPC do
  @moduledoc """
  JSON-RPC 2.0 messages as the MCP server reads and writes them: one JSON
  object per line.

  JSON goes through `:jiffy`, Debian's `erlang-jiffy` package (a C NIF,
  `apt-get install erlang-jiffy`). We chose it over `serde_json` inside our
  own Rust NIF because it is a mature, widely used library that Debian
  already builds, ships and patches, so it adds no build step and no code
  to our NIF; it decodes straight to Elixir maps (`:return_maps`), yields to
  the scheduler on large documents, and writes no raw newline into its
  output, which line framing relies on. Hex packages such as Jason are not
  available on our machines.

  Decoding never raises:

      iex> Thunderbolt.MCP.JSONRPC.decode(~s({"jsonrpc":"2.0","id":1,"method":"ping"}))
      {:ok, %{"jsonrpc" => "2.0", "id" => 1, "method" => "ping"}}
      iex> Thunderbolt.MCP.JSONRPC.decode(~s({"jsonrpc":))
      {:error, "invalid JSON at byte 12: truncated_json"}

  and `classify/1` sorts a decoded value into what the server must do with
  it:

      iex> Thunderbolt.MCP.JSONRPC.classify(%{"jsonrpc" => "2.0", "id" => 7, "method" => "ping"})
      {:request, 7, "ping", %{}}
      iex> Thunderbolt.MCP.JSONRPC.classify(%{"jsonrpc" => "2.0", "method" => "notifications/initialized"})
      {:notification, "notifications/initialized", %{}}
      iex> Thunderbolt.MCP.JSONRPC.classify([1, 2])
      {:error, nil, -32600, "Invalid Request: batches are not supported (MCP removed them in 2025-06-18); send one message per line"}
  """

  @envelope ["jsonrpc", "id", "method", "params", "result", "error"]
  @id_token ~S/(-?\d{1,20}|"(?:[^"\\\x00-\x1f]|\\.){0,200}")/
  @id_first Regex.compile!(
              ~S/\A\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*/ <>
                @id_token <> ~S/\s*[,}]/
            )
  @id_last Regex.compile!(~S/,\s*"id"\s*:\s*/ <> @id_token <> ~S/\s*\}\s*\z/)

  # jiffy has no depth limit: an 8 MiB line of "[" took 0.8 s and 220 MB to
  # decode. Lines this long are scanned first; a shorter one cannot nest
  # deep enough to matter. No tool argument nests near @max_depth.
  @scan_depth_above 65_536
  @max_depth 512

  @parse_error -32700
  @invalid_request -32600
  @method_not_found -32601
  @invalid_params -32602
  @internal_error -32603

  @typedoc "A request id: MCP allows a string or a number, never null."
  @type id :: String.t() | number()
  @type classified ::
          {:request, id(), String.t(), map()}
          | {:notification, String.t(), map()}
          | :response
          | {:error, id() | nil, integer(), String.t()}

  @doc "The JSON-RPC error code for a message that is not valid JSON (-32700)."
  @spec parse_error() :: integer()
  def parse_error, do: @parse_error

  @doc "The JSON-RPC error code for a message that is not a valid request (-32600)."
  @spec invalid_request() :: integer()
  def invalid_request, do: @invalid_request

  @doc "The JSON-RPC error code for an unknown method (-32601)."
  @spec method_not_found() :: integer()
  def method_not_found, do: @method_not_found

  @doc "The JSON-RPC error code for parameters of the wrong shape (-32602)."
  @spec invalid_params() :: integer()
  def invalid_params, do: @invalid_params

  @doc "The JSON-RPC error code for a failure inside the server (-32603)."
  @spec internal_error() :: integer()
  def internal_error, do: @internal_error

  @doc """
  Decodes one line of JSON. JSON `null` becomes `nil`.
  """
  @spec decode(binary()) :: {:ok, term()} | {:error, String.t()}
  def decode(line) when is_binary(line) and byte_size(line) > @scan_depth_above do
    if nesting_within?(line, 0),
      do: jiffy_decode(line),
      else: {:error, "invalid JSON: nested deeper than #{@max_depth} levels"}
  end

  def decode(line) when is_binary(line), do: jiffy_decode(line)

  defp jiffy_decode(line) do
    {:ok, :jiffy.decode(line, [:return_maps, :use_nil])}
  catch
    :error, {position, reason} when is_integer(position) ->
      {:error, "invalid JSON at byte #{position}: #{reason}"}

    :error, {:range, _} ->
      {:error, "invalid JSON: a number is out of range"}

    _kind, _reason ->
      {:error, "invalid JSON"}
  end

  # Brackets outside strings, counted until the depth passes @max_depth:
  # a few nanoseconds a byte, against jiffy building every level.
  defp nesting_within?(<<>>, _depth), do: true
  defp nesting_within?(<<?", rest::binary>>, depth), do: string_within?(rest, depth)

  defp nesting_within?(<<c, rest::binary>>, depth) when c in [?[, ?{],
    do: depth < @max_depth and nesting_within?(rest, depth + 1)

  defp nesting_within?(<<c, rest::binary>>, depth) when c in [?], ?}],
    do: nesting_within?(rest, max(depth - 1, 0))

  defp nesting_within?(<<_, rest::binary>>, depth), do: nesting_within?(rest, depth)

  defp string_within?(<<?\\, _, rest::binary>>, depth), do: string_within?(rest, depth)
  defp string_within?(<<?", rest::binary>>, depth), do: nesting_within?(rest, depth)
  defp string_within?(<<_, rest::binary>>, depth), do: string_within?(rest, depth)
  defp string_within?(_rest, _depth), do: true

  @doc """
  Encodes a term as one line of JSON, without the newline. `nil` becomes
  `null`, and invalid UTF-8 in strings is replaced rather than refused.

      iex> Thunderbolt.MCP.JSONRPC.encode(%{"id" => 1, "result" => %{}})
      ~s({"result":{},"id":1})
  """
  @spec encode(term()) :: binary()
  def encode(%{"jsonrpc" => _} = message) do
    # Put the envelope first, as people expect when they read a log.
    {head, rest} = Map.split(message, @envelope)
    ordered = for key <- @envelope, Map.has_key?(head, key), do: {key, Map.fetch!(head, key)}
    encode_term({ordered ++ Map.to_list(rest)})
  end

  def encode(term), do: encode_term(term)

  # jiffy returns iodata for large documents; callers get one binary.
  defp encode_term(term),
    do: term |> :jiffy.encode([:use_nil, :force_utf8]) |> IO.iodata_to_binary()

  @doc """
  The id of a message too large to decode, if it can be read from the
  message's first or last bytes; otherwise `nil`.

  Only an `"id"` that is plainly a top-level member counts: the first
  member, or the second after `"jsonrpc"`, or the last member (the official
  Python SDK writes it last). This lets the server answer an oversized
  request with an error the client can match, instead of leaving it
  waiting. The id token itself is decoded by `:jiffy`.

      iex> Thunderbolt.MCP.JSONRPC.peek_id(~s({"method":"tools/call","params":{"id":9},"jsonrpc":"2.0","id":3}))
      3
      iex> Thunderbolt.MCP.JSONRPC.peek_id(~s({"jsonrpc":"2.0","id":"a-1","method":"x"}))
      "a-1"
      iex> Thunderbolt.MCP.JSONRPC.peek_id(~s({"method":"x","params":{"id":9}}))
      nil
  """
  @spec peek_id(binary()) :: id() | nil
  def peek_id(line) when is_binary(line) do
    window = 256
    head = binary_part(line, 0, min(window, byte_size(line)))
    tail = binary_part(line, max(byte_size(line) - window, 0), min(window, byte_size(line)))

    with nil <- peek(@id_first, head), do: peek(@id_last, tail)
  end

  defp peek(pattern, bytes) do
    with [_, token] <- Regex.run(pattern, bytes),
         {:ok, id} <- decode(token),
         true <- valid_id?(id) do
      id
    else
      _ -> nil
    end
  end

  @doc """
  A success response.

      iex> Thunderbolt.MCP.JSONRPC.result(1, %{})
      %{"jsonrpc" => "2.0", "id" => 1, "result" => %{}}
  """
  @spec result(id(), map()) :: map()
  def result(id, result), do: %{"jsonrpc" => "2.0", "id" => id, "result" => result}

  @doc """
  An error response. `id` is `nil` when the request's id could not be read;
  `data` is left out when `nil`.

      iex> Thunderbolt.MCP.JSONRPC.error(nil, -32700, "Parse error")
      %{"jsonrpc" => "2.0", "id" => nil, "error" => %{"code" => -32700, "message" => "Parse error"}}
  """
  @spec error(id() | nil, integer(), String.t(), term()) :: map()
  def error(id, code, message, data \\ nil) do
    error = %{"code" => code, "message" => message}
    error = if data == nil, do: error, else: Map.put(error, "data", data)
    %{"jsonrpc" => "2.0", "id" => id, "error" => error}
  end

  @doc """
  Sorts a decoded message.

    * `{:request, id, method, params}` — a request; `params` defaults to `%{}`
    * `{:notification, method, params}` — no `id`, so no response is due
    * `:response` — a response from the client; this server sends no
      requests, so it ignores them
    * `{:error, id, code, message}` — answer with this error (`id` is `nil`
      when the message has no usable id)
  """
  @spec classify(term()) :: classified()
  def classify(message) when is_list(message) do
    {:error, nil, @invalid_request,
     "Invalid Request: batches are not supported (MCP removed them in 2025-06-18); " <>
       "send one message per line"}
  end

  def classify(message) when not is_map(message) do
    {:error, nil, @invalid_request, "Invalid Request: a message must be a JSON object"}
  end

  def classify(message) do
    id = Map.get(message, "id")
    usable_id = if valid_id?(id), do: id

    cond do
      Map.get(message, "jsonrpc") != "2.0" ->
        {:error, usable_id, @invalid_request, ~s(Invalid Request: "jsonrpc" must be "2.0")}

      Map.has_key?(message, "method") ->
        classify_call(message, id, usable_id)

      Map.has_key?(message, "result") or Map.has_key?(message, "error") ->
        :response

      true ->
        {:error, usable_id, @invalid_request,
         ~s(Invalid Request: a message needs a "method" \(or "result"/"error" for a response\))}
    end
  end

  defp classify_call(message, id, usable_id) do
    method = Map.get(message, "method")
    params = Map.get(message, "params", %{})

    cond do
      not is_binary(method) ->
        {:error, usable_id, @invalid_request, ~s(Invalid Request: "method" must be a string)}

      Map.has_key?(message, "id") and usable_id == nil ->
        {:error, nil, @invalid_request,
         ~s(Invalid Request: "id" must be a string or a number, got #{json_type(id)})}

      not is_map(params) ->
        {:error, usable_id, @invalid_params,
         ~s(Invalid params: "params" must be an object, got #{json_type(params)})}

      Map.has_key?(message, "id") ->
        {:request, id, method, params}

      true ->
        {:notification, method, params}
    end
  end

  defp valid_id?(id), do: is_binary(id) or is_number(id)

  @doc """
  The JSON type name of a decoded value, for error messages.

      iex> Thunderbolt.MCP.JSONRPC.json_type([1])
      "an array"
  """
  @spec json_type(term()) :: String.t()
  def json_type(nil), do: "null"
  def json_type(value) when is_boolean(value), do: "a boolean"
  def json_type(value) when is_binary(value), do: "a string"
  def json_type(value) when is_integer(value), do: "an integer"
  def json_type(value) when is_number(value), do: "a number"
  def json_type(value) when is_list(value), do: "an array"
  def json_type(value) when is_map(value), do: "an object"
  def json_type(_value), do: "an unknown value"
end
