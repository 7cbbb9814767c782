defmodule Thunderbolt.Serving.Directory do
  @moduledoc """
  Where servings are found: on this node through `:persistent_term` (names
  kept unique by a `Registry`), and across the cluster through a `:pg` scope
  in which every serving's queue joins the group `{Thunderbolt.Serving, name}`.

  The `:thunderbolt` application starts the directory, so that a node with
  no serving of its own can still see, and route to, the servings of the
  nodes it is connected to. `:pg` follows nodes joining and leaving: a
  node's servings disappear from the group when its connection drops.
  """

  use Supervisor

  @registry Thunderbolt.Serving.Directory.Registry
  @scope Thunderbolt.Serving.Directory.Scope

  @doc false
  @spec start_link(term()) :: Supervisor.on_start()
  def start_link(_arg), do: Supervisor.start_link(__MODULE__, [], name: __MODULE__)

  @impl true
  def init([]) do
    children = [
      {Registry, keys: :unique, name: @registry},
      %{id: :pg, start: {:pg, :start_link, [@scope]}}
    ]

    Supervisor.init(children, strategy: :one_for_one)
  end

  @doc """
  The local serving's queue owner and its published info (the native
  queue, `:native`, the model's `:inputs` and `:outputs`, the runner
  counters, `:stats`), or `:error`.

  Callers read this on every call, so it lives in `:persistent_term`, which
  hands it over without copying; the `Registry` only keeps names unique. An
  entry left behind by a serving that was killed outright names a dead
  queue and reads as `:error`.
  """
  @spec lookup(term()) :: {:ok, pid(), map()} | :error
  def lookup(name) do
    case :persistent_term.get({__MODULE__, name}, nil) do
      %{queue: queue} = info -> if Process.alive?(queue), do: {:ok, queue, info}, else: :error
      nil -> :error
    end
  end

  @doc false
  # The name a queue registers under: unique on this node.
  @spec via(term()) :: GenServer.name()
  def via(name), do: {:via, Registry, {@registry, name}}

  @doc false
  @spec registered?(term()) :: boolean()
  def registered?(name), do: Registry.lookup(@registry, name) != []

  @doc false
  # Called by a queue once it runs; `info` carries the queue's pid.
  @spec publish(term(), map()) :: :ok
  def publish(name, %{queue: _} = info), do: :persistent_term.put({__MODULE__, name}, info)

  @doc false
  # Called by a queue that stops; leaves a newer queue's entry alone.
  @spec withdraw(term(), pid()) :: :ok
  def withdraw(name, queue) do
    case :persistent_term.get({__MODULE__, name}, nil) do
      %{queue: ^queue} -> :persistent_term.erase({__MODULE__, name})
      _ -> false
    end

    :ok
  end

  @doc """
  Adds a serving's queue to the cluster-wide group for `name`.
  """
  @spec join(term(), pid()) :: :ok
  def join(name, pid), do: :pg.join(@scope, group(name), pid)

  @doc """
  The other nodes with a serving for `name`, sorted.
  """
  @spec remote_nodes(term()) :: [node()]
  def remote_nodes(name) do
    @scope
    |> :pg.get_members(group(name))
    |> Enum.map(&node/1)
    |> Enum.reject(&(&1 == node()))
    |> Enum.uniq()
    |> Enum.sort()
  rescue
    # The scope is not running: the :thunderbolt application is not started.
    ArgumentError -> []
  end

  @doc """
  Whether the directory is running on this node.
  """
  @spec running?() :: boolean()
  def running?, do: Process.whereis(__MODULE__) != nil

  defp group(name), do: {Thunderbolt.Serving, name}
end
