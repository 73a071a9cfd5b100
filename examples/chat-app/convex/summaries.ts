import { action } from "./_generated/server";
import { internal } from "./_generated/api";
import { v } from "convex/values";

// Summarises a message without an external model: the first sentence, capped at 80 characters.
export const summarize = action({
  args: { messageId: v.id("messages") },
  handler: async (ctx, { messageId }): Promise<string | null> => {
    const message = await ctx.runQuery(internal.messages.get, { messageId });
    if (message === null) {
      return null;
    }
    const firstSentence = message.body.split(/(?<=[.!?])\s/)[0] ?? message.body;
    const summary = firstSentence.length > 80 ? `${firstSentence.slice(0, 77)}...` : firstSentence;
    await ctx.runMutation(internal.messages.setSummary, { messageId, summary });
    return summary;
  },
});
