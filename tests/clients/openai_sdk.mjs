// The official OpenAI Node SDK (pinned in package.json) driving the gateway the way an
// application does. Usage: node openai_sdk.mjs BASE_URL MODEL CASE; prints one JSON line with
// what it saw, exits non-zero when the SDK itself failed unexpectedly.
//   list    client.models.list()
//   chat    a chat completion, not streamed
//   stream  a streamed chat completion: when each chunk arrived (ms since the request)
//   embed   embeddings for two inputs
//   broken  a streamed chat completion whose backend sends an error event half-way: the
//           SDK's error, if it raised one
//   unknown a chat completion for a model the gateway does not serve: the SDK's error
import OpenAI from "openai";

const [baseURL, model, which] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 20000 });

async function run() {
  switch (which) {
    case "list": {
      const ids = [];
      for await (const m of client.models.list()) ids.push(m.id);
      return { ids };
    }
    case "chat": {
      const r = await client.chat.completions.create({
        model, messages: [{ role: "user", content: "hi" }],
      });
      return { content: r.choices[0].message.content, usage: r.usage };
    }
    case "stream": {
      const started = performance.now();
      const stream = await client.chat.completions.create({
        model, stream: true, stream_options: { include_usage: true },
        messages: [{ role: "user", content: "hi" }],
      });
      const arrivals = [];
      let content = "";
      let usage = null;
      for await (const chunk of stream) {
        arrivals.push(Math.round(performance.now() - started));
        if (chunk.choices.length > 0) content += chunk.choices[0].delta.content ?? "";
        if (chunk.usage) usage = chunk.usage;
      }
      return { arrivals, content, usage };
    }
    case "embed": {
      const r = await client.embeddings.create({ model, input: ["ab", "abc"] });
      return { count: r.data.length, dims: r.data[0].embedding.length };
    }
    case "broken": {
      const stream = await client.chat.completions.create(
        { model, stream: true, messages: [{ role: "user", content: "hi" }] },
        { headers: { "X-Mock-Stream-Error": "1" } });
      try {
        for await (const chunk of stream) void chunk;
      } catch (e) {
        return { raised: e.constructor.name, message: e.message };
      }
      return { raised: null };
    }
    case "unknown": {
      try {
        await client.chat.completions.create({ model: "nope", messages: [] });
      } catch (e) {
        return { raised: e.constructor.name, status: e.status, type: e.type, code: e.code,
                 message: e.message };
      }
      return { raised: null };
    }
    default:
      throw new Error(`unknown case ${which}`);
  }
}

run().then(
  (seen) => console.log(JSON.stringify(seen)),
  (e) => {
    console.log(JSON.stringify({ failed: e.constructor.name, status: e.status ?? null,
                                 message: e.message }));
    process.exit(1);
  });
