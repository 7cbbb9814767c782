defmodule Thunderbolt.Serving.Request do
  @moduledoc """
  One caller's inputs, checked against the model in the caller's own
  process and put in the model's input order, as the native queue takes
  them.

  Inputs are checked here (types, ranks, fixed dimensions, a common row
  count) so that one malformed request cannot fail a whole batch, and so
  that its caller gets the same message `Thunderbolt.run/3` would give.
  The batch key is formed natively from what this returns (see
  `native/thunderbolt_runtime/src/batch.rs`): requests merge when they ask
  for the same outputs and their inputs agree on everything but the number
  of rows.

      iex> spec = %{name: "x", type: {:f, 32}, shape: {nil, 2}}
      iex> x = Thunderbolt.Tensor.new([[1.0, 2.0], [3.0, 4.0]], type: :f32)
      iex> {:ok, [^x], nil} = Thunderbolt.Serving.Request.new([spec], [], x, nil)
      iex> x.shape
      {2, 2}
  """

  alias Thunderbolt.{Error, Inputs, Tensor}

  @doc """
  Checks `inputs` (anything `Thunderbolt.run/3` accepts) against the model's
  input specs and the `outputs` selection (`nil` for all) against its output
  specs. Returns the inputs in input order and the selected output indices
  (`nil` for all).
  """
  @spec new([map()], [map()], Thunderbolt.inputs(), [String.t() | atom()] | nil) ::
          {:ok, [Tensor.t()], [non_neg_integer()] | nil} | {:error, Error.t()}
  def new(input_specs, output_specs, inputs, outputs) do
    with {:ok, tensors} <- Inputs.order(input_specs, inputs),
         {:ok, indices} <- Inputs.output_indices(output_specs, outputs),
         :ok <- check(input_specs, tensors, nil) do
      {:ok, tensors, indices}
    end
  end

  # Plain recursion rather than Enum pipelines: this runs in every caller,
  # on every call. `rows` is the row count of the batch-axis inputs so far.
  defp check([], [], 0), do: invalid("a request needs at least one row")
  defp check([], [], _rows), do: :ok

  defp check([spec | specs], [tensor | tensors], rows) do
    case check_one(spec, tensor) do
      {:rows, n} when rows == nil or rows == n ->
        check(specs, tensors, n)

      {:rows, n} ->
        invalid(
          "inputs disagree on the batch size: #{inspect(spec.name)} has #{n} rows, an earlier input #{rows}"
        )

      :shared ->
        check(specs, tensors, rows)

      {:error, _} = error ->
        error
    end
  end

  defp check_one(%{name: name, type: type, shape: spec_shape}, %Tensor{} = tensor) do
    cond do
      # A struct built by hand with a bad type or shape, which the checks
      # below cannot word: the NIF refuses it with the message
      # `Thunderbolt.run/3` gives (bad dimensions and data too).
      not (is_tuple(tensor.shape) and Tensor.known_type?(tensor.type)) ->
        :shared

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

      batch_axis?(spec_shape) ->
        {:rows, elem(tensor.shape, 0)}

      true ->
        :shared
    end
  end

  @doc """
  Whether an input or output of this shape (a model spec, `nil` for a
  dynamic dimension) has a batch axis: a dynamic leading dimension.
  """
  @spec batch_axis?(tuple()) :: boolean()
  def batch_axis?(shape), do: tuple_size(shape) > 0 and elem(shape, 0) == nil

  defp fixed_dims_match?(spec_shape, _shape, i) when i == tuple_size(spec_shape), do: true

  defp fixed_dims_match?(spec_shape, shape, i) do
    want = elem(spec_shape, i)
    (want == nil or want == elem(shape, i)) and fixed_dims_match?(spec_shape, shape, i + 1)
  end

  defp dims(shape),
    do: "[" <> (shape |> Tuple.to_list() |> Enum.map_join(", ", &(&1 || "?"))) <> "]"

  defp invalid(message), do: {:error, Error.new(:invalid_input, message)}
end
