"""A warm worker for the workflow's jobs: the Python stack is imported once per run, not once per job.

Every rule runs ``detoxlab <step> ...`` as its own process, which is what Snakemake, SLURM and DVC schedule,
cache and kill. Importing torch, transformers and the step code costs that process seconds before it does
anything, and a default run has a few hundred of them. When the workflow runs locally, ``onstart`` launches
one server (:mod:`.server`) that has imported everything once; each job's ``detoxlab`` process (:mod:`.client`)
then hands its command line, working directory, environment and standard streams to the server, which forks a
copy of itself to run the step and reports the exit code back. The job process stays the one Snakemake
started: its log, benchmark, exit code and kill signal mean what they meant; killing it kills the fork.

A forked step starts from a process that has imported modules and read tokenizers but run no tensor work and
touched no GPU, so it behaves like a fresh process: each job still seeds itself and sets its own threads. The
client runs the step in its own process instead whenever the server is absent, not ready yet, refuses (an
environment that import-time settings depend on differs), the job runs inside a SLURM allocation, or it holds
a GPU grant on a machine with an NVIDIA device (CUDA and fork do not mix). ``DETOXLAB_NO_WORKER=1`` turns it off.
"""

#: path of the server's Unix socket, exported to the jobs by the workflow's onstart handler
SOCKET_ENV = "DETOXLAB_WORKER"
#: set to 1 to run every step in its own process
DISABLE_ENV = "DETOXLAB_NO_WORKER"
#: the exit status a server sends for a request it will not run (the client then runs it itself)
REFUSED = -1000
