import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";

export default defineSchema({
  channels: defineTable({
    name: v.string(),
    topic: v.optional(v.string()),
  }).index("by_name", ["name"]),

  messages: defineTable({
    channelId: v.id("channels"),
    author: v.string(),
    body: v.string(),
    summary: v.optional(v.string()),
  })
    .index("by_channel", ["channelId"])
    .searchIndex("search_body", { searchField: "body", filterFields: ["channelId"] }),
});
