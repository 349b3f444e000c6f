"""Operations: the project's deployments, and what ``variants schedule`` runs beside them.

``watch`` (the data folder and a scoring inbox, polled by SHA-256 and stable size), ``events``
(the project's Prefect events: data changed, inbox waiting, model promoted, drift found),
``notify`` (the JSON message and the Prefect automations and webhook block that post it),
``declarations`` (prefect.yaml, the one declaration of the deployments, and a run's options as
plain parameters), ``deployments`` (the deployments ``variants schedule`` makes from it, with
their concurrency limit, schedule and triggers), ``recovery`` (a work pool's flow run whose
worker died: marked crashed, retried once),
``plan`` (what a schedule is asked to serve, checked before anything starts), ``runner``
(serving them against a Prefect server: patient through a restart, quiet, and one line when
the server is gone), and the guard's receiver of MLflow's registry webhooks
(``mlflow_webhooks``: a delivery's signature and body; ``guard_receiver``: the endpoint,
which hands a champion move on as an event for the guard's deployment).

It may import Prefect, ``reporting`` and everything below it (the registry, to record the
champion the guard starts from); it never imports TensorFlow,
``flows`` or ``tasks`` (the flows are passed in).
"""
