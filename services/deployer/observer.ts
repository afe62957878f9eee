// What the deployer tells the rest of the process about finished work, for metrics and feeds.
// Domain code calls it after the change committed; implementations must not throw or block.

/** How an install ended. */
export type InstallEnding = 'succeeded' | 'failed' | 'timed_out';

export interface DeployerObserver {
  /** An install ended (`seconds` from plan fetch to the final report or the timeout sweep). */
  installFinished(ending: InstallEnding, seconds: number): void;
}

export const NO_OBSERVER: DeployerObserver = { installFinished() {} };
