// The Alora front end's WebSocket context and useWebSocketHook, as the
// document describes them, driven from a test.
//
//   node notifications_context.js <url> <jwt> <userId>
//
// The JWT travels in the "token" cookie, as the browser sends it (Node has no
// cookie jar for it, so the Cookie header is set with extraHeaders).  The
// context registers on connect ("automatic"), refreshes notifications and
// toasts on newNotification, and toasts errors.  Prints JSON lines: event
// {event, args} (every server event), toast {kind, text}, refresh, connect,
// result {id, value | error}.  stdin lines {"id", "js"} are evaluated with
// the hook's functions in scope (emit, sendTyping, updateStatus,
// sendBookingUpdate, socketRef, ack).

const { io } = require("socket.io-client");
const { print, toJson, deadline, interactive } = require("./lib");

const [URL, TOKEN, USER_ID] = process.argv.slice(2);
deadline(45000, () => "notifications_context");

const toast = {
  info: (text) => print({ type: "toast", kind: "info", text }),
  error: (text) => print({ type: "toast", kind: "error", text }),
};
function refreshNotifications() {
  print({ type: "refresh" });
}

// ---- websocket_context.tsx ----
const user = { id: USER_ID };
const socketRef = { current: null };
let isConnected = false;

socketRef.current = io(URL, {
  withCredentials: true,
  extraHeaders: { Cookie: `token=${TOKEN}` },
});

socketRef.current.on("connect", () => {
  isConnected = true;
  socketRef.current.emit("register", user.id);
});
socketRef.current.on("disconnect", () => {
  isConnected = false;
});
socketRef.current.on("newNotification", (notification) => {
  refreshNotifications();
  toast.info(notification.title || "New notification");
});
socketRef.current.on("userOnline", (data) => console.log("User online:", data));
socketRef.current.on("userOffline", (data) => console.log("User offline:", data));
socketRef.current.on("statusUpdated", (data) => console.log("Status updated:", data));
socketRef.current.on("userTyping", (data) => console.log("User typing:", data));
socketRef.current.on("bookingUpdated", (data) => console.log("Booking updated:", data));
socketRef.current.on("connect_error", (error) => toast.error(`Connection error: ${error.message}`));
socketRef.current.on("error", (error) => toast.error(`WebSocket error: ${error.message}`));

// ---- useWebSocketHook ----
const emit = (event, data) => {
  socketRef.current?.emit(event, data);
};
const sendTyping = (data) => emit("typing", data);
const updateStatus = (data) => emit("updateStatus", data);
const sendBookingUpdate = (data) => emit("bookingUpdate", data);
// ---- end ----

console.log = () => {};
const socket = socketRef.current;
socket.onAny((event, ...args) => print({ type: "event", event, args: toJson(args) }));
socket.on("connect", () => print({ type: "connect", id: socket.id, connected: isConnected }));
function ack(event, ...args) {
  return socket.timeout(5000).emitWithAck(event, ...args);
}

interactive(
  (js) => eval(js),
  () => {
    socket.disconnect();
    process.exit(0);
  },
);
