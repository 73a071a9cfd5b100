import { httpRouter } from "convex/server";
import { httpAction } from "./_generated/server";
import { api } from "./_generated/api";

const http = httpRouter();

http.route({
  path: "/channels",
  method: "GET",
  handler: httpAction(async (ctx) => {
    const channels = await ctx.runQuery(api.channels.list, {});
    return new Response(JSON.stringify(channels), {
      status: 200,
      headers: { "Content-Type": "application/json" },
    });
  }),
});

export default http;
