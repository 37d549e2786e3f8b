"""`buxiban chat`: talk to a fine-tuned run, a registered adapter or a base model."""

from __future__ import annotations


def add_chat_commands(commands) -> None:
    chat = commands.add_parser("chat", help="talk to a fine-tuned run (or a base model)")
    source = chat.add_mutually_exclusive_group()
    source.add_argument("--run", help="a run directory written by `buxiban train`")
    source.add_argument("--model", help="a base model spec instead of a run (default: embedded)")
    source.add_argument("--adapter", help="a registered adapter name (see `buxiban adapters list`)")
    chat.add_argument(
        "--template",
        default="auto",
        help="with --model: chat template for a model without one, or instead of its own: auto (default), a family (chatml, llama3, gemma, phi3, granite, mistral) or a .jinja file (a run uses the template it trained with; another is refused)",
    )
    chat.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a model (or a run's model) that needs its repository's code; never taken from files",
    )
    chat.add_argument("-m", "--message", help="ask once, print the answer and exit")
    chat.add_argument("--system", help="system prompt (default: the one most used in the run's training data)")
    chat.add_argument("--max-new-tokens", type=int, default=256)
    chat.add_argument(
        "--rag",
        metavar="INDEX",
        help="put the best chunks of this index (`buxiban rag index`) into each question's prompt",
    )
    chat.add_argument("--rag-k", type=int, default=3, help="chunks per question with --rag (default 3)")
    chat.set_defaults(handler=cmd_chat)


def cmd_chat(args) -> int:
    from .chat_session import ChatSession

    rag = None
    if args.rag:  # opened before the model loads: a wrong path fails in milliseconds
        from ..rag.retrieve import open_index

        rag = open_index(args.rag)
    session = ChatSession.open(
        run=args.run,
        model=args.model or "embedded",
        system=args.system,
        max_new_tokens=args.max_new_tokens,
        adapter=args.adapter,
        template=args.template,
        trust_remote_code=args.trust_remote_code,
    )
    session.rag, session.rag_k = rag, args.rag_k
    if args.message is not None:
        print(session.ask(args.message, stream=False))
        print_sources(session)
        return 0
    print(f"chatting with {session.label}; /reset clears the conversation, /exit or Ctrl-D quits")
    if session.system:
        print(f"system: {session.system}")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if line in ("/exit", "/quit"):
            return 0
        if line == "/reset":
            session.reset()
            continue
        if line:
            print("assistant> ", end="", flush=True)
            session.ask(line, stream=True)
            print_sources(session)


def print_sources(session) -> None:
    if session.rag is not None:
        from ..rag.retrieve import format_sources

        print("sources:\n" + format_sources(session.last_sources))
