#!/bin/bash

# Parameters
#SBATCH --array=0-5%2
#SBATCH --comment='medtl golden'
#SBATCH --cpus-per-task=1
#SBATCH --error=<RESULTS>/seeded/_slurm/%A_%a_0_log.err
#SBATCH --job-name=medtl-test
#SBATCH --mem=1GB
#SBATCH --nodes=1
#SBATCH --open-mode=append
#SBATCH --output=<RESULTS>/seeded/_slurm/%A_%a_0_log.out
#SBATCH --partition=debug
#SBATCH --signal=USR2@90
#SBATCH --time=5
#SBATCH --wckey=submitit

# setup
export MEDTL_SETUP_RAN=1

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output <RESULTS>/seeded/_slurm/%A_%a_%t_log.out --error <RESULTS>/seeded/_slurm/%A_%a_%t_log.err <PYTHON> -u -m submitit.core._submit <RESULTS>/seeded/_slurm
