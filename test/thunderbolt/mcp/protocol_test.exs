defmodule Thunderbolt.MCP.ProtocolTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.MCP.Protocol

  alias Thunderbolt.MCP.Protocol
  alias Thunderbolt.TestModels

  @moduletag :capture_log
  @moduletag :tmp_dir

  setup context do
    case context do
      %{tmp_dir: dir} ->
        File.cp!(TestModels.fixture("serving/tiny_text.onnx"), Path.join(dir, "tiny_text.onnx"))
        %{state: Protocol.new(model_dir: dir)}

      # Doctests get no tmp_dir.
      _doctest ->
        :ok
    end
  end

  # Sends one line and returns the decoded reply (nil when there is none).
  defp send_line(state, line) do
    case Protocol.handle_line(state, line) do
      {[], state} ->
        {nil, state}

      {[reply], state} ->
        refute reply =~ "\n"
        {:jiffy.decode(reply, [:return_maps, :use_nil]), state}
    end
  end

  defp request(state, id, method, params \\ nil) do
    message = %{"jsonrpc" => "2.0", "id" => id, "method" => method}
    message = if params, do: Map.put(message, "params", params), else: message
    send_line(state, :jiffy.encode(message))
  end

  defp notify(state, method) do
    send_line(state, :jiffy.encode(%{"jsonrpc" => "2.0", "method" => method}))
  end

  defp initialized(state, version \\ "2025-11-25") do
    {%{"result" => _}, state} =
      request(state, 0, "initialize", %{
        "protocolVersion" => version,
        "capabilities" => %{},
        "clientInfo" => %{"name" => "test", "version" => "1"}
      })

    {nil, state} = notify(state, "notifications/initialized")
    state
  end

  defp error_code(reply), do: reply["error"]["code"]

  describe "handle_line/2: lifecycle" do
    test "initialize answers a supported version with that version", %{state: state} do
      for version <- Protocol.supported_versions() do
        {reply, state} =
          request(state, 1, "initialize", %{"protocolVersion" => version, "capabilities" => %{}})

        assert reply["id"] == 1
        assert reply["result"]["protocolVersion"] == version
        assert reply["result"]["capabilities"] == %{"tools" => %{"listChanged" => false}}
        assert reply["result"]["serverInfo"]["name"] == "thunderbolt"
        assert reply["result"]["instructions"] =~ "list_models"
        assert state.phase == :initializing
      end
    end

    test "initialize answers an unknown version with our latest", %{state: state} do
      {reply, _} = request(state, 1, "initialize", %{"protocolVersion" => "2099-01-01"})
      assert reply["result"]["protocolVersion"] == hd(Protocol.supported_versions())
    end

    test "notifications/initialized completes the handshake without a reply", %{state: state} do
      {_, state} = request(state, 1, "initialize", %{"protocolVersion" => "2025-06-18"})
      assert {nil, %Protocol{phase: :ready}} = notify(state, "notifications/initialized")
    end

    test "initialize with wrong-typed params is -32602", %{state: state} do
      for params <- [
            %{},
            %{"protocolVersion" => 20_251_125},
            %{"protocolVersion" => "2025-11-25", "capabilities" => "all"},
            %{"protocolVersion" => "2025-11-25", "clientInfo" => ["x"]}
          ] do
        {reply, state} = request(state, 7, "initialize", params)
        assert error_code(reply) == -32602, inspect(params)
        assert reply["id"] == 7
        assert state.phase == :new
      end
    end

    test "a second initialize is refused", %{state: state} do
      state = initialized(state)
      {reply, _} = request(state, 2, "initialize", %{"protocolVersion" => "2025-11-25"})
      assert error_code(reply) == -32600
    end

    test "tools requests before initialize are refused, ping is not", %{state: state} do
      {reply, state} = request(state, 1, "tools/list")
      assert error_code(reply) == -32600
      assert reply["error"]["message"] =~ "initialize"
      {reply, state} = request(state, 2, "tools/call", %{"name" => "list_models"})
      assert error_code(reply) == -32600
      assert {%{"id" => 3, "result" => %{}}, _} = request(state, 3, "ping")
    end

    test "server/discover is refused as method-not-found, before and after initialize",
         %{state: state} do
      # The 2026-07-28 probe carries its version in _meta.
      params = %{"_meta" => %{"io.modelcontextprotocol/protocolVersion" => "2026-07-28"}}

      for state <- [state, initialized(state)] do
        {reply, _} = request(state, "probe", "server/discover", params)
        assert reply["id"] == "probe"
        assert error_code(reply) == -32601
        assert reply["error"]["data"]["supportedVersions"] == Protocol.supported_versions()
      end
    end
  end

  describe "handle_line/2: JSON-RPC errors" do
    setup %{state: state}, do: %{state: initialized(state)}

    test "malformed JSON is -32700 with a null id, and the next request works", %{state: state} do
      for line <- [
            "{",
            ~s({"jsonrpc":"2.0","id":1,"method":"ping"),
            "nul",
            <<0xFF, 0xFE>>,
            "[1,]"
          ] do
        {reply, state} = send_line(state, line)
        assert error_code(reply) == -32700
        assert reply["id"] == nil
        assert {%{"id" => 2, "result" => %{}}, _} = request(state, 2, "ping")
      end
    end

    test "messages that are not requests are -32600", %{state: state} do
      for line <- [
            "[]",
            ~s([{"jsonrpc":"2.0","id":1,"method":"ping"}]),
            "42",
            ~s("ping"),
            ~s({"id":1,"method":"ping"}),
            ~s({"jsonrpc":"2.0","id":{"a":1},"method":"ping"}),
            ~s({"jsonrpc":"2.0","id":1,"method":5}),
            ~s({"jsonrpc":"2.0","id":1})
          ] do
        {reply, _} = send_line(state, line)
        assert error_code(reply) == -32600, line
      end
    end

    test "an unknown method is -32601 with the request's id", %{state: state} do
      for method <- ["resources/list", "prompts/list", "tools/run", ""] do
        {reply, _} = request(state, "u1", method)
        assert {reply["id"], error_code(reply)} == {"u1", -32601}
      end
    end

    test "wrong-typed params are -32602", %{state: state} do
      cases = [
        {"tools/call", %{"name" => 12}},
        {"tools/call", %{}},
        {"tools/call", %{"name" => "onnx_infer", "arguments" => [1, 2]}},
        {"tools/call", %{"name" => "onnx_infer", "arguments" => "model=x"}},
        {"tools/call", %{"name" => "no_such_tool", "arguments" => %{}}},
        {"tools/list", %{"cursor" => 3}},
        {"tools/list", %{"cursor" => "page-2"}}
      ]

      for {method, params} <- cases do
        {reply, _} = request(state, 5, method, params)
        assert error_code(reply) == -32602, inspect({method, params})
      end

      {reply, _} =
        send_line(state, ~s({"jsonrpc":"2.0","id":6,"method":"tools/list","params":[1]}))

      assert error_code(reply) == -32602
    end

    test "a message over the size limit is refused unread, with the id when it shows",
         %{state: state} do
      # 10 MB, the way the official Python SDK writes it: the id last.
      data = String.duplicate("1,", 5_000_000)

      line =
        ~s({"method":"tools/call","params":{"name":"onnx_infer","arguments":{"model":"tiny_text.onnx","input":{"data":[#{data}1]}}},"jsonrpc":"2.0","id":99})

      assert byte_size(line) > 10_000_000
      {reply, state} = send_line(state, line)
      assert {reply["id"], error_code(reply)} == {99, -32600}
      assert reply["error"]["data"] == %{"size" => byte_size(line), "limit" => 8 * 1024 * 1024}
      assert {%{"id" => 100, "result" => %{}}, _} = request(state, 100, "ping")
    end

    test "the size limit is configurable and counts bytes without the newline",
         %{tmp_dir: dir} do
      state = Protocol.new(model_dir: dir, max_message_bytes: 40)
      ping = ~s({"jsonrpc":"2.0","id":1,"method":"ping"})
      assert byte_size(ping) == 40
      assert {%{"result" => %{}}, state} = send_line(state, ping <> "\n")
      {reply, _} = send_line(state, ping <> " ")
      assert error_code(reply) == -32600
    end

    test "notifications, responses and blank lines get no reply", %{state: state} do
      for line <- [
            ~s({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}),
            ~s({"jsonrpc":"2.0","method":"notifications/whatever"}),
            ~s({"jsonrpc":"2.0","id":1,"result":{}}),
            ~s({"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}),
            "",
            "\r\n",
            "   "
          ] do
        assert {nil, _} = send_line(state, line), inspect(line)
      end
    end

    test "no line, however odd, raises or makes more than one reply", %{state: state} do
      :rand.seed(:exsss, {6, 6, 6})

      fragments = [
        "{",
        "}",
        "[",
        "]",
        ~s("jsonrpc":"2.0"),
        ~s("id":1),
        ~s("method":"tools/call"),
        ~s("params":{"name":"onnx_infer","arguments":{"model":"x","input":{"data":[1]}}}),
        ",",
        ":",
        "null",
        "1e308",
        <<0xC3>>,
        "\"",
        "\\u0000"
      ]

      Enum.reduce(1..3000, state, fn _, state ->
        line = Enum.map_join(1..:rand.uniform(8), fn _ -> Enum.random(fragments) end)
        {replies, state} = Protocol.handle_line(state, line)
        assert length(replies) <= 1

        for reply <- replies do
          assert %{"jsonrpc" => "2.0"} = :jiffy.decode(reply, [:return_maps])
        end

        state
      end)
    end
  end

  describe "handle_line/2: tools" do
    test "tools/list gives the three tools, with output schemas from 2025-06-18", %{state: state} do
      {reply, _} = request(initialized(state, "2025-11-25"), 1, "tools/list")
      tools = reply["result"]["tools"]
      assert Enum.map(tools, & &1["name"]) == ["onnx_infer", "list_models", "model_info"]

      for tool <- tools do
        assert tool["inputSchema"]["type"] == "object"
        assert tool["outputSchema"]["type"] == "object"
        assert is_binary(tool["title"]) and byte_size(tool["description"]) > 50
      end

      {reply, _} = request(initialized(state, "2025-03-26"), 1, "tools/list")

      for tool <- reply["result"]["tools"] do
        refute Map.has_key?(tool, "outputSchema")
        refute Map.has_key?(tool, "title")
      end
    end

    test "tools/call returns structured content and the same JSON as text", %{state: state} do
      {reply, _} =
        request(initialized(state), 3, "tools/call", %{
          "name" => "onnx_infer",
          "arguments" => %{
            "model" => "tiny_text.onnx",
            "input" => %{"data" => [1, 2, 3, 4, 5, 6, 7, 8]}
          }
        })

      result = reply["result"]
      assert result["isError"] == false
      assert %{"predictions" => %{"logits" => %{"shape" => [1, 6]}}} = result["structuredContent"]
      [%{"type" => "text", "text" => text}] = result["content"]
      assert :jiffy.decode(text, [:return_maps]) == result["structuredContent"]
    end

    test "before 2025-06-18 a result carries the text only", %{state: state} do
      {reply, _} =
        request(initialized(state, "2025-03-26"), 3, "tools/call", %{"name" => "list_models"})

      refute Map.has_key?(reply["result"], "structuredContent")
      [%{"text" => text}] = reply["result"]["content"]
      assert %{"models" => [%{"model" => "tiny_text.onnx"}]} = :jiffy.decode(text, [:return_maps])
    end

    test "a failing tool is a result with isError, and the server goes on", %{state: state} do
      state = initialized(state)

      {reply, state} =
        request(state, 4, "tools/call", %{
          "name" => "model_info",
          "arguments" => %{"model" => "../../etc/passwd"}
        })

      assert reply["result"]["isError"] == true
      assert hd(reply["result"]["content"])["text"] =~ "Forbidden model path"
      assert {%{"id" => 5, "result" => %{}}, _} = request(state, 5, "ping")
    end
  end
end
