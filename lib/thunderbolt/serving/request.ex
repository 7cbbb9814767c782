defmodule Thunderbolt.Serving.Request do
  @moduledoc """
  One caller's inputs, checked against the model and reduced to what
  batching needs: a batch key, a row count and the row data.

  The work runs in the caller's process, so the queue only compares keys and
  counts rows. Requests merge into one batch only when their keys are equal.
  A key holds the requested outputs, one slot per model input and a marker
  that is `nil` unless the request must run alone:

    * `{:rows, type, rest}` — the input's leading dimension is dynamic in the
      model, so it is the batch axis: the requests' row-major data are
      concatenated, and `rest` (the non-batch shape) must be equal;
    * `{:shared, tensor}` — the input has a fixed leading dimension (such as
      `cerebros_mini.onnx`'s positional table), so every request in the batch
      must pass an equal tensor, which is fed once;
  When the model has no batchable input at all, the marker is a fresh
  reference, so the request is never merged.

  Inputs are checked here (types, ranks, fixed dimensions) so that one
  malformed request cannot fail a whole batch.

      iex> spec = %{name: "x", type: {:f, 32}, shape: {nil, 2}}
      iex> x = Thunderbolt.Tensor.new([[1.0, 2.0], [3.0, 4.0]], type: :f32)
      iex> {:ok, key, rows, [data]} = Thunderbolt.Serving.Request.new([spec], [], x, nil)
      iex> {key, rows, byte_size(data)}
      {{nil, [{:rows, {:f, 32}, {2}}], nil}, 2, 16}
  """

  alias Thunderbolt.{Error, Tensor}

  @type slot :: {:rows, Tensor.type(), tuple()} | {:shared, Tensor.t()}
  @type key :: {[String.t()] | nil, [slot()], reference() | nil}

  @doc """
  Checks `inputs` (anything `Thunderbolt.run/3` accepts) against the model's
  input specs and the `outputs` selection (`nil` for all) against its output
  specs. Returns the batch key, the row count and the data of the `:rows`
  slots in input order.
  """
  @spec new([map()], [map()], Thunderbolt.inputs(), [String.t() | atom()] | nil) ::
          {:ok, key(), pos_integer(), [binary()]} | {:error, Error.t()}
  def new(input_specs, output_specs, inputs, outputs) do
    with {:ok, tensors} <- order(input_specs, inputs),
         {:ok, outputs} <- select_outputs(output_specs, outputs) do
      slots(input_specs, tensors, outputs)
    end
  end

  # Plain recursion rather than Enum pipelines: this runs in every caller,
  # on every call.
  defp slots(specs, tensors, outputs), do: slots(specs, tensors, outputs, [], nil, [])

  defp slots([], [], _outputs, _slots, 0, _data), do: invalid("a request needs at least one row")

  defp slots([], [], outputs, slots, nil, []),
    do: {:ok, {outputs, Enum.reverse(slots), make_ref()}, 1, []}

  defp slots([], [], outputs, slots, rows, data),
    do: {:ok, {outputs, Enum.reverse(slots), nil}, rows, Enum.reverse(data)}

  defp slots([spec | specs], [tensor | tensors], outputs, slots, rows, data) do
    case slot(spec, tensor) do
      {:ok, {:rows, _, _} = slot, n} when rows == nil or rows == n ->
        slots(specs, tensors, outputs, [slot | slots], n, [tensor.data | data])

      {:ok, {:rows, _, _}, n} ->
        invalid(
          "inputs disagree on the batch size: #{inspect(spec.name)} has #{n} rows, an earlier input #{rows}"
        )

      {:ok, slot} ->
        slots(specs, tensors, outputs, [slot | slots], rows, data)

      {:error, _} = error ->
        error
    end
  end

  defp slot(%{name: name, type: type, shape: spec_shape}, %Tensor{} = tensor) do
    cond do
      type != nil and type != tensor.type ->
        invalid(
          "input #{inspect(name)} expects #{Tensor.type_string(type)}, got #{Tensor.type_string(tensor.type)}"
        )

      tuple_size(spec_shape) != tuple_size(tensor.shape) ->
        invalid(
          "input #{inspect(name)} expects rank #{tuple_size(spec_shape)} #{dims(spec_shape)}, got shape #{inspect(tensor.shape)}"
        )

      not fixed_dims_match?(spec_shape, tensor.shape, 0) ->
        invalid(
          "input #{inspect(name)} expects shape #{dims(spec_shape)}, got #{inspect(tensor.shape)}"
        )

      tuple_size(spec_shape) > 0 and elem(spec_shape, 0) == nil ->
        {:ok, {:rows, tensor.type, Tuple.delete_at(tensor.shape, 0)}, elem(tensor.shape, 0)}

      true ->
        {:ok, {:shared, tensor}}
    end
  end

  defp fixed_dims_match?(spec_shape, _shape, i) when i == tuple_size(spec_shape), do: true

  defp fixed_dims_match?(spec_shape, shape, i) do
    want = elem(spec_shape, i)
    (want == nil or want == elem(shape, i)) and fixed_dims_match?(spec_shape, shape, i + 1)
  end

  defp dims(shape),
    do: "[" <> (shape |> Tuple.to_list() |> Enum.map_join(", ", &(&1 || "?"))) <> "]"

  # The same input forms as Thunderbolt.run/3: one tensor for a one-input
  # model, a list in input order, or a map from input name to tensor.
  defp order([_], tensor) when is_struct(tensor), do: coerce_all([tensor])

  defp order(specs, tensor) when is_struct(tensor),
    do: invalid("the model has #{length(specs)} inputs (#{names(specs)}); pass a list or a map")

  defp order(specs, list) when is_list(list) do
    if length(list) == length(specs),
      do: coerce_all(list),
      else:
        invalid(
          "the model takes #{length(specs)} input(s) (#{names(specs)}), got #{length(list)}"
        )
  end

  defp order(specs, map) when is_map(map) do
    by_name = Map.new(map, fn {key, value} -> {to_name(key), value} end)

    cond do
      map_size(by_name) != map_size(map) ->
        invalid("an input is given twice (as a string and as an atom)")

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

  defp order(_specs, other),
    do: invalid("inputs must be a tensor, a list or a map, got: #{inspect(other, limit: 5)}")

  defp to_name(key) when is_atom(key), do: Atom.to_string(key)
  defp to_name(key), do: key

  defp coerce_all([%Tensor{}] = tensors), do: {:ok, tensors}

  defp coerce_all(values) do
    Enum.reduce_while(values, {:ok, []}, fn value, {:ok, acc} ->
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

  defp select_outputs(_specs, nil), do: {:ok, nil}

  defp select_outputs(specs, names) when is_list(names) do
    known = Enum.map(specs, & &1.name)
    names = Enum.map(names, &to_name/1)

    case Enum.reject(names, &(&1 in known)) do
      [] ->
        {:ok, names}

      unknown ->
        invalid(
          "unknown output(s) #{Enum.map_join(unknown, ", ", &inspect/1)}; the model's outputs are #{names(specs)}"
        )
    end
  end

  defp select_outputs(_specs, other),
    do: {:error, Error.new(:invalid_option, ":outputs must be a list, got: #{inspect(other)}")}

  defp names(specs), do: Enum.map_join(specs, ", ", &inspect(&1.name))

  defp invalid(message), do: {:error, Error.new(:invalid_input, message)}
end
