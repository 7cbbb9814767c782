defmodule Thunderbolt.Serving.Router do
  @moduledoc """
  Sends a call to a serving on another node when this node has none.

  The candidates are the nodes in the serving's `:pg` group (see
  `Thunderbolt.Serving.Directory`), sorted. Calls go round-robin over them:
  a node-wide counter picks one, and the call goes there through `:erpc`.
  If that node is unreachable (it went down, perhaps with the call in
  flight), has no serving of that name any more (the group lags a node
  that just stopped its serving), or answers `:overloaded`, the call moves
  on to another node of the group as it is then, each node at most once,
  within the caller's timeout. Running a model twice is harmless, and the
  caller still gets exactly one answer.
  """

  alias Thunderbolt.Serving.Directory

  @counter {__MODULE__, :next}
  # Room for the reply to travel back after the remote side's own timeout.
  @transit_ms 1_000

  @doc """
  Runs `inputs` on another node's serving `name`. `timeout` is in
  milliseconds or `:infinity`; `opts` are `Thunderbolt.Serving.run/3`'s.
  """
  @spec run(term(), Thunderbolt.inputs(), keyword(), timeout()) ::
          {:ok, map()} | {:error, term()}
  def run(name, inputs, opts, timeout) do
    try_next(name, inputs, opts, deadline(timeout), [], :no_serving)
  end

  # Each round re-reads the group, so a node that joined while an earlier
  # attempt failed is a candidate too; nodes already tried are not.
  defp try_next(name, inputs, opts, deadline, tried, last) do
    case Directory.remote_nodes(name) -- tried do
      [] ->
        {:error, last}

      nodes ->
        start = rem(:atomics.add_get(counter(), 1, 1), length(nodes))
        node = Enum.at(nodes, start)

        case remaining(deadline) do
          0 -> {:error, :timeout}
          left -> attempt(node, name, inputs, opts, deadline, tried, left)
        end
    end
  end

  defp attempt(node, name, inputs, opts, deadline, tried, left) do
    case call(node, name, inputs, Keyword.put(opts, :timeout, left), left) do
      {:error, reason} when reason in [:no_serving, :overloaded] ->
        try_next(name, inputs, opts, deadline, [node | tried], reason)

      {:error, {:nodedown, _} = reason} ->
        try_next(name, inputs, opts, deadline, [node | tried], reason)

      result ->
        result
    end
  end

  defp call(node, name, inputs, opts, left) do
    transit = if left == :infinity, do: :infinity, else: left + @transit_ms
    :erpc.call(node, Thunderbolt.Serving, :run_local, [name, inputs, opts], transit)
  catch
    :error, {:erpc, :noconnection} -> {:error, {:nodedown, node}}
    :error, {:erpc, :timeout} -> {:error, :timeout}
    kind, reason -> {:error, {:remote_failure, node, {kind, reason}}}
  end

  defp deadline(:infinity), do: :infinity
  defp deadline(ms), do: System.monotonic_time(:millisecond) + ms

  defp remaining(:infinity), do: :infinity
  defp remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)

  defp counter do
    case :persistent_term.get(@counter, nil) do
      nil ->
        # Two processes may race here; either counter serves, one wins.
        ref = :atomics.new(1, signed: false)
        :persistent_term.put(@counter, ref)
        ref

      ref ->
        ref
    end
  end
end
