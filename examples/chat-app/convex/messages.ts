import { internalMutation, internalQuery, mutation, query } from "./_generated/server";
import { v } from "convex/values";

export const list = query({
  args: { channelId: v.id("channels"), limit: v.optional(v.number()) },
  handler: async (ctx, { channelId, limit }) => {
    return await ctx.db
      .query("messages")
      .withIndex("by_channel", (q) => q.eq("channelId", channelId))
      .order("desc")
      .take(limit ?? 50);
  },
});

export const send = mutation({
  args: { channelId: v.id("channels"), author: v.string(), body: v.string() },
  handler: async (ctx, { channelId, author, body }) => {
    if (body.trim().length === 0) {
      throw new Error("A message needs a body");
    }
    return await ctx.db.insert("messages", { channelId, author, body });
  },
});

export const search = query({
  args: { channelId: v.id("channels"), text: v.string() },
  handler: async (ctx, { channelId, text }) => {
    return await ctx.db
      .query("messages")
      .withSearchIndex("search_body", (q) => q.search("body", text).eq("channelId", channelId))
      .take(10);
  },
});

export const get = internalQuery({
  args: { messageId: v.id("messages") },
  handler: async (ctx, { messageId }) => ctx.db.get(messageId),
});

export const setSummary = internalMutation({
  args: { messageId: v.id("messages"), summary: v.string() },
  handler: async (ctx, { messageId, summary }) => {
    await ctx.db.patch(messageId, { summary });
  },
});

const RETENTION_MS = 30 * 24 * 60 * 60 * 1000;

export const pruneOld = internalMutation({
  args: {},
  handler: async (ctx) => {
    const cutoff = Date.now() - RETENTION_MS;
    const old = await ctx.db
      .query("messages")
      .filter((q) => q.lt(q.field("_creationTime"), cutoff))
      .take(100);
    for (const message of old) {
      await ctx.db.delete(message._id);
    }
    return old.length;
  },
});
