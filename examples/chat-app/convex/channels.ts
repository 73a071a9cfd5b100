import { mutation, query } from "./_generated/server";
import { v } from "convex/values";

export const list = query({
  args: {},
  handler: async (ctx) => {
    return await ctx.db.query("channels").collect();
  },
});

export const create = mutation({
  args: { name: v.string(), topic: v.optional(v.string()) },
  handler: async (ctx, { name, topic }) => {
    const existing = await ctx.db
      .query("channels")
      .withIndex("by_name", (q) => q.eq("name", name))
      .unique();
    if (existing !== null) {
      return existing._id;
    }
    return await ctx.db.insert("channels", { name, topic });
  },
});
