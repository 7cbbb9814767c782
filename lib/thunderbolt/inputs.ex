defmodule Thunderbolt.Inputs do
  @moduledoc """
  The forms in which a run's inputs and output selection may be given, and
  their checks against a model's signature. `Thunderbolt.run/3` and
  `Thunderbolt.Serving.run/3` share them, so both accept exactly the same
  things and refuse the rest with the same messages.

  Inputs are a single tensor (for a one-input model), a list in the model's
  input order, or a map from input name (string or atom) to tensor.

      iex> specs = [%{name: "x", type: {:f, 32}, shape: {nil, 1}}]
      iex> x = Thunderbolt.Tensor.new([[1.0]])
      iex> Thunderbolt.Inputs.order(specs, %{x: x})
      {:ok, [x]}
      iex> {:error, %Thunderbolt.Error{message: message}} = Thunderbolt.Inputs.order(specs, %{y: x})
      iex> message
      ~s[unknown input(s) "y"; the model's inputs are "x"]
  """

  alias Thunderbolt.{Error, Tensor}

  @doc """
  The tensors of `inputs` in the order of `specs` (the model's inputs).
  `Nx.Tensor`s are converted.
  """
  @spec order([%{name: String.t()}], term()) :: {:ok, [Tensor.t()]} | {:error, Error.t()}
  def order([_], %Tensor{} = tensor), do: {:ok, [tensor]}
  def order([_], tensor) when is_struct(tensor), do: coerce_all([tensor])

  def order(specs, tensor) when is_struct(tensor),
    do: invalid("the model has #{length(specs)} inputs (#{names(specs)}); pass a list or a map")

  def order(specs, list) when is_list(list) do
    cond do
      List.improper?(list) ->
        invalid("inputs must be a proper list, got: #{inspect(list, limit: 5)}")

      length(list) == length(specs) ->
        coerce_all(list)

      true ->
        invalid(
          "the model takes #{length(specs)} input(s) (#{names(specs)}), got #{length(list)}"
        )
    end
  end

  def order(specs, map) when is_map(map) do
    with {:ok, by_name} <- by_name(map) do
      cond do
        (unknown = Map.keys(by_name) -- Enum.map(specs, & &1.name)) != [] ->
          invalid(
            "unknown input(s) #{Enum.map_join(unknown, ", ", &inspect/1)}; the model's inputs are #{names(specs)}"
          )

        (missing = Enum.reject(specs, &Map.has_key?(by_name, &1.name))) != [] ->
          invalid("missing input(s): #{names(missing)}")

        true ->
          specs |> Enum.map(&Map.fetch!(by_name, &1.name)) |> coerce_all()
      end
    end
  end

  def order(_specs, other),
    do: invalid("inputs must be a tensor, a list or a map, got: #{inspect(other, limit: 5)}")

  @doc """
  Checks an output selection (`nil` for all) against `specs` (the model's
  outputs) and returns the names as strings.

      iex> specs = [%{name: "logits"}, %{name: "embedding"}]
      iex> Thunderbolt.Inputs.select_outputs(specs, [:logits])
      {:ok, ["logits"]}
  """
  @spec select_outputs([%{name: String.t()}], [String.t() | atom()] | nil) ::
          {:ok, [String.t()] | nil} | {:error, Error.t()}
  def select_outputs(_specs, nil), do: {:ok, nil}

  def select_outputs(specs, names) when is_list(names) do
    if List.improper?(names), do: outputs_error(names), else: select_known(specs, names)
  end

  def select_outputs(_specs, other), do: outputs_error(other)

  defp outputs_error(other),
    do:
      {:error,
       Error.new(
         :invalid_option,
         ":outputs must be a list of output names, got: #{inspect(other)}"
       )}

  defp select_known(specs, names) do
    names = Enum.map(names, &to_name/1)

    case Enum.reject(names, fn name -> Enum.any?(specs, &(&1.name == name)) end) do
      [] ->
        {:ok, names}

      unknown ->
        invalid(
          "unknown output(s) #{Enum.map_join(unknown, ", ", &inspect/1)}; the model's outputs are #{names(specs)}"
        )
    end
  end

  @doc """
  Like `select_outputs/2`, but gives the selected outputs' positions in
  `specs`, the form the NIFs take (`nil` for all).

      iex> specs = [%{name: "logits"}, %{name: "embedding"}]
      iex> Thunderbolt.Inputs.output_indices(specs, [:embedding])
      {:ok, [1]}
  """
  @spec output_indices([%{name: String.t()}], [String.t() | atom()] | nil) ::
          {:ok, [non_neg_integer()] | nil} | {:error, Error.t()}
  def output_indices(_specs, nil), do: {:ok, nil}

  def output_indices(specs, names) do
    with {:ok, names} <- select_outputs(specs, names) do
      {:ok, Enum.map(names, fn name -> Enum.find_index(specs, &(&1.name == name)) end)}
    end
  end

  defp by_name(map) do
    case string_keys(map) do
      {:ok, by_name} ->
        {:ok, by_name}

      {:error, {:not_a_name, key}} ->
        invalid("input names must be strings or atoms, got #{inspect(key)}")

      {:error, {:given_twice, name}} ->
        invalid("input #{inspect(name)} is given twice (as a string and as an atom)")
    end
  end

  @doc """
  The map with its atom keys turned into strings, as JSON-shaped and
  Elixir-shaped callers give the same names. A key that is neither, or a
  name given both ways, is refused; callers word the error for their
  context.

      iex> Thunderbolt.Inputs.string_keys(%{"dtype" => "f32", data: [1]})
      {:ok, %{"data" => [1], "dtype" => "f32"}}
      iex> Thunderbolt.Inputs.string_keys(%{:data => [1], "data" => [2]})
      {:error, {:given_twice, "data"}}
  """
  @spec string_keys(map()) ::
          {:ok, %{String.t() => term()}}
          | {:error, {:not_a_name, term()} | {:given_twice, String.t()}}
  def string_keys(map) do
    Enum.reduce_while(map, {:ok, %{}}, fn {key, value}, {:ok, acc} ->
      name = to_name(key)

      cond do
        not is_binary(name) -> {:halt, {:error, {:not_a_name, key}}}
        Map.has_key?(acc, name) -> {:halt, {:error, {:given_twice, name}}}
        true -> {:cont, {:ok, Map.put(acc, name, value)}}
      end
    end)
  end

  defp to_name(key) when is_atom(key) and not is_nil(key), do: Atom.to_string(key)
  defp to_name(key), do: key

  defp coerce_all(values) do
    values
    |> Enum.reduce_while({:ok, []}, fn value, {:ok, acc} ->
      case Tensor.coerce(value) do
        {:ok, tensor} -> {:cont, {:ok, [tensor | acc]}}
        error -> {:halt, error}
      end
    end)
    |> case do
      {:ok, tensors} -> {:ok, Enum.reverse(tensors)}
      error -> error
    end
  end

  defp names(specs), do: Enum.map_join(specs, ", ", &inspect(&1.name))

  defp invalid(message), do: {:error, Error.new(:invalid_input, message)}
end
