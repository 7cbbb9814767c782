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

  alias Thunderbolt.{Error, Inputs, Tensor}

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
    with {:ok, tensors} <- Inputs.order(input_specs, inputs),
         {:ok, outputs} <- Inputs.select_outputs(output_specs, outputs) do
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

  defp invalid(message), do: {:error, Error.new(:invalid_input, message)}
end
