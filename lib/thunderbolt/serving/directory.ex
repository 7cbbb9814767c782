defmodule Thunderbolt.Serving.Directory do
  @moduledoc """
  Where servings are found: on this node through a `Registry`, and across
  the cluster through a `:pg` scope in which every serving's queue joins the
  group `{Thunderbolt.Serving, name}`.

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
  The local serving's queue and its published info, or `:error`.
  """
  @spec lookup(term()) :: {:ok, pid(), map()} | :error
  def lookup(name) do
    case Registry.lookup(@registry, name) do
      [{pid, info}] -> {:ok, pid, info}
      [] -> :error
    end
  rescue
    # The registry's table is missing: the :thunderbolt application is not running.
    ArgumentError -> :error
  end

  @doc false
  # The name a queue registers under, carrying `info` for callers to read.
  @spec via(term(), map()) :: GenServer.name()
  def via(name, info), do: {:via, Registry, {@registry, name, info}}

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
