import { cronJobs } from "convex/server";
import { internal } from "./_generated/api";

const crons = cronJobs();

crons.daily(
  "prune messages older than 30 days",
  { hourUTC: 4, minuteUTC: 0 },
  internal.messages.pruneOld,
);

export default crons;
