defmodule Thunderbolt.Ash.OnnxInferenceTest do
  # Ash is not installed here: these tests check the code the macro expands
  # to, as quoted Elixir, and run the action's implementation directly.
  use ExUnit.Case, async: true

  alias Thunderbolt.Ash.OnnxInference
  require Thunderbolt.Ash.OnnxInference
  alias Thunderbolt.TestModels

  # The calls named `name` anywhere in `ast`.
  defp calls(ast, name) do
    {_, found} =
      Macro.prewalk(ast, [], fn
        {^name, _meta, args} = node, acc when is_list(args) -> {node, [args | acc]}
        node, acc -> {node, acc}
      end)

    Enum.reverse(found)
  end

  describe "resource_ast/1 (what `use` expands to)" do
    setup do
      %{ast: OnnxInference.resource_ast(domain: quote(do: MyApp.ML))}
    end

    test "an Ash resource in the caller's domain", %{ast: ast} do
      assert [[{:__aliases__, _, [:Ash, :Resource]}, [domain: {:__aliases__, _, [:MyApp, :ML]}]]] =
               calls(ast, :use)
    end

    test "a generic action :infer returning a map, with its three arguments", %{ast: ast} do
      assert [[:infer, :map, [do: body]]] = calls(ast, :action)

      arguments =
        for [name, type | opts] <- calls(body, :argument) do
          {name, type, List.first(opts, [])}
        end

      assert [
               {:model_path, :string, [allow_nil?: false]},
               {:input, :map, [allow_nil?: false]},
               {:metadata, :map, [default: {:%{}, _, []}]}
             ] = arguments

      assert [[description]] = calls(body, :description)
      assert is_binary(description)
    end

    test "run delegates to run/3 with the input and context", %{ast: ast} do
      [[:infer, :map, [do: body]]] = calls(ast, :action)
      assert [[{:fn, _, [{:->, _, [[input, context], call]}]}]] = calls(body, :run)

      assert {{:., _, [{:__aliases__, _, [:Thunderbolt, :Ash, :OnnxInference]}, :run]}, _,
              [^input, ^context, []]} = call
    end

    test "a code interface with metadata optional", %{ast: ast} do
      assert [[[do: interface]]] = calls(ast, :code_interface)

      assert [[:infer, [args: [:model_path, :input, {:optional, :metadata}]]]] =
               calls(interface, :define)
    end

    test "actions and code_interface sit at the top level of the module", %{ast: ast} do
      assert {:__block__, _, [{:use, _, _}, {:actions, _, _}, {:code_interface, _, _}]} = ast
    end

    test ":infer_opts reach run/3" do
      ast = OnnxInference.resource_ast(domain: quote(do: MyApp.ML), infer_opts: [top_k: 5])
      [[:infer, :map, [do: body]]] = calls(ast, :action)
      [[{:fn, _, [{:->, _, [_, call]}]}]] = calls(body, :run)
      assert {_, _, [_, _, [top_k: 5]]} = call
    end

    test "needs a domain" do
      assert_raise ArgumentError, ~r/needs a domain/, fn -> OnnxInference.resource_ast([]) end
    end
  end

  describe "__using__/1" do
    test "expands, in the caller, to resource_ast/1 of the quoted options" do
      call = quote(do: Thunderbolt.Ash.OnnxInference.__using__(domain: MyApp.ML))
      expanded = Macro.expand_once(call, __ENV__)

      assert expanded != call

      assert Macro.to_string(expanded) ==
               Macro.to_string(OnnxInference.resource_ast(domain: quote(do: MyApp.ML)))

      assert Macro.to_string(expanded) =~ "use Ash.Resource, domain: MyApp.ML"
    end
  end

  describe "run/3" do
    @fixtures TestModels.fixture("serving")

    test "takes AshAi's string-keyed JSON and returns a JSON-ready map" do
      arguments = %{
        model_path: "tiny_text.onnx",
        input: %{"data" => Enum.to_list(1..8)},
        metadata: %{"top_k" => 2}
      }

      assert {:ok, result} = OnnxInference.run(%{arguments: arguments}, %{}, model_dir: @fixtures)

      assert %{
               "status" => "success",
               "model_path" => "tiny_text.onnx",
               "predictions" => %{"logits" => %{"shape" => [1, 6], "top_k" => [[_, _]]}}
             } = result

      assert result |> :jiffy.encode() |> IO.iodata_to_binary() |> :jiffy.decode([:return_maps]) ==
               result
    end

    test "metadata may be absent or nil" do
      for arguments <- [
            %{model_path: "tiny_text.onnx", input: %{"data" => Enum.to_list(1..8)}},
            %{model_path: "tiny_text.onnx", input: %{"data" => Enum.to_list(1..8)}, metadata: nil}
          ] do
        assert {:ok, %{"metadata" => %{}}} =
                 OnnxInference.run(%{arguments: arguments}, %{}, model_dir: @fixtures)
      end
    end

    test "an error is a sentence" do
      arguments = %{model_path: "../etc/passwd", input: %{"data" => [1]}, metadata: %{}}

      assert OnnxInference.run(%{arguments: arguments}, %{}, model_dir: @fixtures) ==
               {:error, "model path \"../etc/passwd\" is outside the model directory"}
    end
  end
end
