defmodule Thunderbolt.MCP.JSONRPCTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.MCP.JSONRPC

  alias Thunderbolt.MCP.JSONRPC

  describe "decode/1" do
    test "decodes objects to string-keyed maps and null to nil" do
      assert JSONRPC.decode(~s({"a":null,"b":[1,2.5,true,"x"]})) ==
               {:ok, %{"a" => nil, "b" => [1, 2.5, true, "x"]}}
    end

    test "reports malformed JSON without raising" do
      for bad <- ["{", "{\"a\":1} trailing", <<"\"", 0xFF, "\"">>, "", "nul", "1e999", "[1,]"] do
        assert {:error, "invalid JSON" <> _} = JSONRPC.decode(bad), inspect(bad)
      end
    end

    test "refuses long lines nested deeper than 512 levels before decoding them" do
      nested = fn depth, pad ->
        String.duplicate("[", depth) <> String.duplicate("]", depth) <> String.duplicate(" ", pad)
      end

      # jiffy took 0.8 s and 220 MB on an 8 MB line of this.
      assert JSONRPC.decode(nested.(4_000_000, 0)) ==
               {:error, "invalid JSON: nested deeper than 512 levels"}

      assert {:error, "invalid JSON: nested" <> _} = JSONRPC.decode(nested.(513, 70_000))
      assert {:ok, [[_]]} = JSONRPC.decode(nested.(512, 70_000) |> String.replace("[]", "[1]"))

      # Brackets inside strings, after an escaped quote too, do not count.
      brackets = String.duplicate("[", 100_000)
      in_string = ~S({"a":"\") <> brackets <> ~S("})
      assert JSONRPC.decode(in_string) == {:ok, %{"a" => "\"" <> brackets}}

      # Short lines are left to jiffy, whatever their depth.
      assert {:ok, _} = JSONRPC.decode(nested.(1000, 0))
    end
  end

  describe "encode/1" do
    test "writes the envelope first and no raw newline" do
      json = JSONRPC.encode(JSONRPC.result("x", %{"text" => "a\nb"}))
      assert json == ~s({"jsonrpc":"2.0","id":"x","result":{"text":"a\\nb"}})
      refute json =~ "\n"
    end

    test "returns one binary even for documents jiffy writes as iodata" do
      json = JSONRPC.encode(%{"values" => List.duplicate(1.5, 100_000)})
      assert is_binary(json)
      assert {:ok, %{"values" => values}} = JSONRPC.decode(json)
      assert length(values) == 100_000
    end

    test "replaces invalid UTF-8 instead of failing" do
      assert {:ok, %{"m" => message}} = JSONRPC.decode(JSONRPC.encode(%{"m" => <<"a", 0xFF>>}))
      assert String.valid?(message)
    end
  end

  describe "error/4" do
    test "includes data only when given" do
      assert %{"error" => %{"data" => %{"limit" => 1}}} =
               JSONRPC.error(1, -32600, "x", %{"limit" => 1})

      refute Map.has_key?(JSONRPC.error(1, -32600, "x")["error"], "data")
    end
  end

  describe "classify/1" do
    test "requests, notifications and responses" do
      assert {:request, "a", "tools/list", %{"cursor" => "c"}} =
               JSONRPC.classify(%{
                 "jsonrpc" => "2.0",
                 "id" => "a",
                 "method" => "tools/list",
                 "params" => %{"cursor" => "c"}
               })

      assert {:notification, "notifications/cancelled", %{}} =
               JSONRPC.classify(%{"jsonrpc" => "2.0", "method" => "notifications/cancelled"})

      assert :response = JSONRPC.classify(%{"jsonrpc" => "2.0", "id" => 1, "result" => %{}})
      assert :response = JSONRPC.classify(%{"jsonrpc" => "2.0", "id" => 1, "error" => %{}})
    end

    test "invalid requests keep the id when it is usable" do
      assert {:error, 4, -32600, _} = JSONRPC.classify(%{"id" => 4, "method" => "ping"})

      assert {:error, 4, -32600, _} =
               JSONRPC.classify(%{"jsonrpc" => "1.0", "id" => 4, "method" => "ping"})

      assert {:error, 4, -32600, _} =
               JSONRPC.classify(%{"jsonrpc" => "2.0", "id" => 4, "method" => 12})

      assert {:error, 4, -32600, _} = JSONRPC.classify(%{"jsonrpc" => "2.0", "id" => 4})

      assert {:error, nil, -32600, _} =
               JSONRPC.classify(%{"jsonrpc" => "2.0", "id" => nil, "method" => "ping"})

      assert {:error, nil, -32600, _} =
               JSONRPC.classify(%{"jsonrpc" => "2.0", "id" => [1], "method" => "ping"})

      assert {:error, nil, -32600, _} = JSONRPC.classify("ping")
      assert {:error, nil, -32600, _} = JSONRPC.classify(42)
    end

    test "params that are not an object are invalid params" do
      for params <- [[1, 2], "x", 3, true] do
        assert {:error, 9, -32602, message} =
                 JSONRPC.classify(%{
                   "jsonrpc" => "2.0",
                   "id" => 9,
                   "method" => "ping",
                   "params" => params
                 })

        assert message =~ ~s("params" must be an object)
      end
    end
  end

  describe "peek_id/1" do
    test "finds a leading or trailing top-level id in a huge message" do
      filler = String.duplicate("7,", 1_000_000)
      sdk = ~s({"method":"tools/call","params":{"a":[#{filler}0]},"jsonrpc":"2.0","id":41})
      assert JSONRPC.peek_id(sdk) == 41
      first = ~s({"jsonrpc":"2.0","id":"req-1","method":"tools/call","params":{"a":[#{filler}0]}})
      assert JSONRPC.peek_id(first) == "req-1"
    end

    test "does not mistake a nested id for the message's" do
      assert JSONRPC.peek_id(~s({"method":"x","params":{"id":3}})) == nil
      assert JSONRPC.peek_id(~s({"params":{"id":3},"method":"x"})) == nil
      assert JSONRPC.peek_id(~s({"jsonrpc":"2.0","id":null,"method":"x"})) == nil
      assert JSONRPC.peek_id("not json at all") == nil
      assert JSONRPC.peek_id("") == nil
    end
  end
end
