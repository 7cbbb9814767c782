defmodule Thunderbolt.InputsTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.Inputs

  alias Thunderbolt.{Error, Inputs, Tensor}

  @a %{name: "a", type: {:f, 32}, shape: {nil, 1}}
  @b %{name: "b", type: {:s, 64}, shape: {nil}}

  setup do
    %{a: Tensor.new([[1.0]]), b: Tensor.new([1])}
  end

  describe "order/2" do
    test "lists, string keys and atom keys give the model's order", %{a: a, b: b} do
      assert {:ok, [^a, ^b]} = Inputs.order([@a, @b], [a, b])
      assert {:ok, [^a, ^b]} = Inputs.order([@a, @b], %{"b" => b, "a" => a})
      assert {:ok, [^a, ^b]} = Inputs.order([@a, @b], %{b: b, a: a})
    end

    test "refuses each malformed form with a message", %{a: a, b: b} do
      for {inputs, pattern} <- [
            {a, "has 2 inputs"},
            {[a], "takes 2 input(s)"},
            {%{"a" => a}, ~s[missing input(s): "b"]},
            {%{"a" => a, "b" => b, "c" => b}, ~s[unknown input(s) "c"]},
            {%{"a" => a, :a => a, "b" => b}, ~s[input "a" is given twice]},
            {%{1 => a}, "input names must be strings or atoms"},
            {[a, [1]], "expected a Thunderbolt.Tensor"},
            {:nope, "inputs must be a tensor, a list or a map"}
          ] do
        assert {:error, %Error{kind: :invalid_input, message: message}} =
                 Inputs.order([@a, @b], inputs)

        assert message =~ pattern
      end
    end
  end

  describe "select_outputs/2" do
    test "keeps nil, names atoms and refuses unknown names" do
      specs = [%{name: "y"}]
      assert {:ok, nil} = Inputs.select_outputs(specs, nil)
      assert {:ok, ["y"]} = Inputs.select_outputs(specs, [:y])
      assert {:error, %Error{kind: :invalid_input}} = Inputs.select_outputs(specs, ["z"])
      assert {:error, %Error{kind: :invalid_option}} = Inputs.select_outputs(specs, "y")
    end
  end
end
