defmodule Thunderbolt.Application do
  @moduledoc false
  # Starts the processes the serving layer needs: the session cache
  # (`Thunderbolt.ModelServer`), configured by `config :thunderbolt, :model_server`.

  use Application

  @impl true
  def start(_type, _args) do
    children = [
      # Where Thunderbolt.Serving instances are found, locally and across nodes.
      Thunderbolt.Serving.Directory,
      {Thunderbolt.ModelServer, Application.get_env(:thunderbolt, :model_server, [])}
    ]

    Supervisor.start_link(children, strategy: :one_for_one, name: Thunderbolt.Supervisor)
  end
end
