defmodule Thunderbolt.Serving.Router do
  @moduledoc """
  Sends a call to a serving on another node when this node has none.

  The candidates are the nodes in the serving's `:pg` group (see
  `Thunderbolt.Serving.Directory`), sorted. Calls go round-robin over them:
  a node-wide counter picks where the list starts, and the call goes there
  through `:erpc`. If that node is unreachable, has no serving of that name
  any more (the group lags a node that just stopped its serving), or
  answers `:overloaded`, the call moves on to the next node, each at most
  once, within the caller's timeout. Running a model twice is harmless,
  and the caller still gets exactly one answer.
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
    case Directory.remote_nodes(name) do
      [] ->
        {:error, :no_serving}

      nodes ->
        start = rem(:atomics.add_get(counter(), 1, 1), length(nodes))
        {tail, head} = Enum.split(nodes, start)
        deadline = deadline(timeout)
        try_nodes(head ++ tail, name, inputs, opts, deadline, :no_serving)
    end
  end

  defp try_nodes([], _name, _inputs, _opts, _deadline, last), do: {:error, last}

  defp try_nodes([node | nodes], name, inputs, opts, deadline, _last) do
    case remaining(deadline) do
      0 ->
        {:error, :timeout}

      left ->
        opts = Keyword.put(opts, :timeout, left)

        case call(node, name, inputs, opts, left) do
          {:error, reason} when reason in [:no_serving, :overloaded] ->
            try_nodes(nodes, name, inputs, opts, deadline, reason)

          {:error, {:nodedown, _}} = down ->
            try_nodes(nodes, name, inputs, opts, deadline, elem(down, 1))

          result ->
            result
        end
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
