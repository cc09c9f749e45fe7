"""A real one-node SLURM cluster in a folder, for tests: munged, slurmctld and slurmd.

Debian's slurm-wlm runs on one machine as root with a 30-line slurm.conf: the node is
"localhost" (127.0.0.1), the controller and the node daemon listen on free 127.0.0.1
ports, and munged (SLURM's authentication) has its own key and socket in the folder, so
that nothing of the machine's own SLURM or munge (if any) is used or changed. Processes
are tracked without cgroups (proctrack/linuxproc, task/none). `OneNode.stop()` ends the
three daemons by their PIDs.
"""

import os
import shutil
import signal
import subprocess
import time

from keras_alexnet.training import launcher

PROGRAMS = ("munged", "slurmctld", "slurmd", "srun", "scontrol", "scancel", "sinfo", "squeue")

SLURM_CONF = """\
ClusterName=tests
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={folder}/munge.socket
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=tests Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def program(name):
    """The path of a SLURM or munge program (the daemons are in /usr/sbin), or None."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))


def missing():
    """Why a SLURM cluster cannot start here (a sentence), or None when it can."""
    absent = [p for p in PROGRAMS if program(p) is None]
    if absent:
        return (
            f"SLURM is not installed ({', '.join(absent)} not found; Debian's slurm-wlm "
            "has them, and .ci/run installs it)"
        )
    if os.geteuid() != 0:
        return "the one-node SLURM runs its daemons as root (SlurmUser=root)"
    return None


class OneNode:
    """A one-node SLURM cluster whose files are in `folder`; `env` reaches it.

    Args:
        folder: an empty folder of the test's own (a pathlib.Path).
        seconds: how long to wait for the node to be idle.
    """

    def __init__(self, folder, seconds=60):
        self.folder = folder
        self.processes = {}
        for name in ("state", "spool"):
            (folder / name).mkdir()
        ctld_port, slurmd_port = launcher.free_ports(2)
        self.conf = folder / "slurm.conf"
        self.conf.write_text(
            SLURM_CONF.format(folder=folder, ctld_port=ctld_port, slurmd_port=slurmd_port)
        )
        key = folder / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        try:
            self._start(seconds)
        except BaseException:
            self.stop()
            raise

    def _start(self, seconds):
        f = self.folder
        self._daemon(
            "munged",
            "munged",
            "--foreground",
            # Its socket is in the test's private folder, which other users cannot reach:
            # munged refuses that without --force (only root uses this cluster).
            "--force",
            f"--socket={f}/munge.socket",
            f"--key-file={f}/munge.key",
            f"--pid-file={f}/munged.pid",
            f"--log-file={f}/munged.log",
            f"--seed-file={f}/munged.seed",
        )
        self._wait(lambda: (f / "munge.socket").exists(), seconds, "munged's socket")
        self._daemon("slurmctld", "slurmctld", "-D", "-i", "-f", str(self.conf))
        self._daemon("slurmd", "slurmd", "-D", "-N", "localhost", "-f", str(self.conf))
        self._wait(lambda: self.node_state() == "idle", seconds, "an idle node")

    def _daemon(self, name, *command):
        log = open(self.folder / f"{name}.out", "wb")
        with log:
            self.processes[name] = subprocess.Popen(
                [program(command[0]), *command[1:]],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # signals to the test's process group miss it
            )

    def _wait(self, ready, seconds, what):
        deadline = time.monotonic() + seconds
        while not ready():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} after {seconds} s:\n{self.logs()}")
            time.sleep(0.2)

    def node_state(self):
        """The node's state as sinfo prints it ("idle", "alloc", ...), or None."""
        result = self.run("sinfo", "--noheader", "--format=%t")
        return result.stdout.strip() if result.returncode == 0 else None

    def run(self, *command, timeout=60):
        """Runs a SLURM command (scontrol, squeue, ...) against this cluster."""
        return subprocess.run(
            [program(command[0]), *command[1:]],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )

    def logs(self, chars=3000):
        """The tail of each daemon's output, to explain a failure."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}"
            for path in sorted(self.folder.glob("*.out"))
        )

    def stop(self):
        """Cancels what still runs, then ends slurmd, slurmctld and munged by their PIDs."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--signal=KILL", "--user=root")
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
