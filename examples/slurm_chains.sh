#!/bin/bash
# Many Timewarp chains on a SLURM cluster: a job array with one GPU per task.
#
# Every array task runs the same command; `timewarp sample` reads SLURM_ARRAY_TASK_ID and
# SLURM_ARRAY_TASK_COUNT and runs chains i with i mod COUNT == its task index, with the proposal
# model on its GPU and one batched model call per round for its chains. Each chain writes
# $OUTPUT/<index>-<peptide>/ (trajectory.dcd, topology.pdb, statistics.json, checkpoint.pt).
#
# Resuming: submit the same script again (or let SLURM requeue it). Each chain continues from its
# last checkpoint; frames written after that checkpoint are cut off first, so nothing is lost or
# written twice. --steps is the total per chain, so a longer run is the same command with more steps.
#
# Without a job array, one srun step with one task per GPU works the same way (SLURM_PROCID and
# SLURM_NTASKS give the rank):
#     srun --ntasks-per-node=4 --gpus-per-task=1 timewarp sample ...
# and on one node torchrun does (RANK, WORLD_SIZE, LOCAL_RANK):
#     torchrun --standalone --nproc-per-node=4 --no-python timewarp sample ...
#
#SBATCH --job-name=timewarp-chains
#SBATCH --array=0-3
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --output=logs/%x-%A_%a.out

set -euo pipefail

MODEL=${MODEL:-alanine-dipeptide}   # a bundled name or a model file
OUTPUT=${OUTPUT:-runs/chains}

# The proposal model runs on the task's GPU; each chain's energies come from its own Context on
# the --platform given (Reference suits peptides of tens of atoms; CUDA suits large Systems).
timewarp sample "$MODEL" examples/alanine-dipeptide.pdb \
    --chains-per-peptide 64 \
    --steps 1000000 \
    --seed 1 \
    --trajectory-interval 1000 \
    --checkpoint-interval 20000 \
    --platform Reference \
    --output "$OUTPUT"
