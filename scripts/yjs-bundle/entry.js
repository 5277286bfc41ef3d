// The collab page's Yjs: one ES module with yjs and y-websocket (built by scripts/build-yjs).
export * from "yjs";
export { WebsocketProvider } from "y-websocket";
