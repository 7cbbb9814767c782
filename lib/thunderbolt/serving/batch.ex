defmodule Thunderbolt.Serving.Batch do
  @moduledoc """
  Runs requests that share a batch key as one ONNX Runtime call and splits
  the outputs back, one result per request, in request order.

  Concatenation along the batch axis is plain binary concatenation: tensors
  are row-major, so the rows of request 2 follow the rows of request 1. An
  output whose leading dimension is dynamic in the model is split the same
  way, by row counts; an output with a fixed leading dimension does not
  depend on the batch and every request gets all of it.

  If the merged call fails (say one request holds a token id the model
  rejects), each request is run again on its own, so only the faulty one
  gets the error.

      iex> spec = %{name: "x", type: {:f, 32}, shape: {nil, 2}}
      iex> a = Thunderbolt.Tensor.new([[1.0, 2.0]], type: :f32)
      iex> b = Thunderbolt.Tensor.new([[3.0, 4.0], [5.0, 6.0]], type: :f32)
      iex> {:ok, key, 1, da} = Thunderbolt.Serving.Request.new([spec], [], a, nil)
      iex> {:ok, ^key, 2, db} = Thunderbolt.Serving.Request.new([spec], [], b, nil)
      iex> [x] = Thunderbolt.Serving.Batch.concat(key, [{1, da}, {2, db}])
      iex> Thunderbolt.Tensor.to_list(x)
      [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
      iex> out = %{"y" => x}
      iex> {:ok, [ya, yb]} = Thunderbolt.Serving.Batch.split(out, [%{name: "y", shape: {nil, 2}}], [1, 2])
      iex> {Thunderbolt.Tensor.to_list(ya["y"]), yb["y"].shape}
      {[[1.0, 2.0]], {2, 2}}
  """

  alias Thunderbolt.{Error, Session, Tensor}
  alias Thunderbolt.Serving.Request

  @typedoc "A request as the runner sees it: its row count and the data of its `:rows` slots."
  @type entry :: {pos_integer(), [binary()]}
  @type result :: {:ok, %{String.t() => Tensor.t()}} | {:error, Error.t()}

  @doc """
  Runs `entries` (all with batch `key`) on `session` and returns one result
  per entry, in order, tagged `:merged` when they ran as one call or
  `:separate` when the merged call failed and each ran alone. `scheduler`
  is passed to `Thunderbolt.run/3`.
  """
  @spec run(Session.t(), Request.key(), [entry()], atom()) :: {:merged | :separate, [result()]}
  def run(session, key, [entry], scheduler),
    do: {:merged, [run_one(session, key, entry, scheduler)]}

  def run(session, {outputs, _, _} = key, entries, scheduler) do
    with {:ok, merged} <-
           Thunderbolt.run(session, concat(key, entries), opts(outputs, scheduler)),
         {:ok, results} <- split(merged, session.outputs, Enum.map(entries, &elem(&1, 0))) do
      {:merged, Enum.map(results, &{:ok, &1})}
    else
      _failed -> {:separate, Enum.map(entries, &run_one(session, key, &1, scheduler))}
    end
  end

  defp run_one(session, {outputs, _, _} = key, entry, scheduler),
    do: Thunderbolt.run(session, concat(key, [entry]), opts(outputs, scheduler))

  defp opts(nil, scheduler), do: [scheduler: scheduler]
  defp opts(outputs, scheduler), do: [outputs: outputs, scheduler: scheduler]

  @doc """
  The model inputs for `entries`, in input order: `:rows` slots concatenated
  along axis 0, `:shared` slots as they are.
  """
  @spec concat(Request.key(), [entry()]) :: [Tensor.t()]
  def concat({_outputs, slots, _alone}, entries) do
    total = entries |> Enum.map(&elem(&1, 0)) |> Enum.sum()
    columns = columns(entries, Enum.count(slots, &match?({:rows, _, _}, &1)))
    feed(slots, columns, total)
  end

  defp feed([], _columns, _total), do: []

  defp feed([{:shared, tensor} | slots], columns, total),
    do: [tensor | feed(slots, columns, total)]

  defp feed([{:rows, type, rest} | slots], [column | columns], total) do
    tensor = %Tensor{type: type, shape: Tuple.insert_at(rest, 0, total), data: column}
    [tensor | feed(slots, columns, total)]
  end

  # One binary per :rows slot, each the concatenation of every entry's data.
  defp columns([{_rows, data}], _count), do: data
  defp columns(_entries, 0), do: []

  defp columns(entries, 1),
    do: [entries |> Enum.map(fn {_rows, [data]} -> data end) |> IO.iodata_to_binary()]

  defp columns(entries, _count) do
    entries
    |> Enum.map(&elem(&1, 1))
    |> Enum.zip_with(&IO.iodata_to_binary/1)
  end

  @doc """
  Splits a merged output map into one map per request, by row counts.
  `output_specs` says which outputs have a dynamic leading (batch) dimension.
  Returns `:error` when a batch output does not have one row per input row.
  """
  @spec split(%{String.t() => Tensor.t()}, [map()], [pos_integer()]) ::
          {:ok, [%{String.t() => Tensor.t()}]} | :error
  def split(outputs, output_specs, row_counts) do
    total = Enum.sum(row_counts)
    batched = for %{name: name, shape: shape} <- output_specs, batch_axis?(shape), do: name

    Enum.reduce_while(outputs, {:ok, []}, fn {name, tensor}, {:ok, acc} ->
      cond do
        name not in batched ->
          {:cont, {:ok, [{name, List.duplicate(tensor, length(row_counts))} | acc]}}

        tuple_size(tensor.shape) > 0 and elem(tensor.shape, 0) == total ->
          {:cont, {:ok, [{name, slices(tensor, total, row_counts)} | acc]}}

        true ->
          {:halt, :error}
      end
    end)
    |> case do
      {:ok, columns} -> {:ok, rows_to_maps(columns, length(row_counts))}
      :error -> :error
    end
  end

  defp batch_axis?(shape), do: tuple_size(shape) > 0 and elem(shape, 0) == nil

  defp slices(%Tensor{data: data, shape: shape} = tensor, total, row_counts) do
    row_bytes = div(byte_size(data), total)

    {pieces, _offset} =
      Enum.map_reduce(row_counts, 0, fn rows, offset ->
        piece = %{
          tensor
          | shape: put_elem(shape, 0, rows),
            data: binary_part(data, offset, rows * row_bytes)
        }

        {piece, offset + rows * row_bytes}
      end)

    pieces
  end

  defp rows_to_maps([{name, pieces}], _count), do: Enum.map(pieces, &%{name => &1})
  defp rows_to_maps([], count), do: List.duplicate(%{}, count)

  defp rows_to_maps(columns, _count) do
    names = Enum.map(columns, &elem(&1, 0))

    columns
    |> Enum.map(&elem(&1, 1))
    |> Enum.zip_with(fn pieces -> names |> Enum.zip(pieces) |> Map.new() end)
  end
end
